/*
 * Optional compiled scanner for a raw CLIENT LIST reply (exporter/pipeline/scan_pure.py has the
 * pure-Python path and the semantics; this file must give identical results).
 *
 * Why C: the pure path costs ~1 us per client in the regex engine alone; the goal leaves
 * ~0.35 us per client for fetch overhead + parse + aggregate. Here one pass over the bytes
 * reads only the wanted fields, counts label tuples in a C hash table keyed by the raw byte
 * slices (with, per tuple, its clients, its clients idle past the threshold and the sums of the
 * summed columns), and fills the histograms: no Python object is created per client, only one
 * per distinct label tuple.
 *
 * Semantics, per line (lines end with \n; blank lines are skipped):
 *   - tokens are separated by single spaces; a token without '=' is ignored; key is the part
 *     before the first '=', value the rest; the last occurrence of a key wins;
 *   - a line with neither `id` nor `addr` is not a client line: counted as malformed;
 *   - numeric fields (histograms, sums) count only when the value is all ASCII digits.
 * When a numeric value is too long to be exact in a double (> 15 digits) or a sum would
 * overflow, scan() returns None and the caller uses the pure path, which has big integers.
 *
 * Tracking (churn and traffic between CLIENT LISTs): scan() can also return, per client with a
 * valid id, its id, the index of its label tuple and three traffic counters, as arrays sorted
 * by id (ties: reply order); diff() compares two such snapshots in one merge walk. The state
 * kept between polls is those arrays: ~32 bytes per client, no Python object per client.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_FIELDS 16
#define MAX_DIGITS 15
#define MAX_ORDER 64
#define MAX_SUMS 8
#define MAX_MEASURES (2 + MAX_SUMS) /* clients, idle past the threshold, sums */
#define TRAFFIC 3                   /* tot-net-in, tot-net-out, tot-cmds */

typedef struct {
    const char *name;
    Py_ssize_t len;
} Key;

typedef struct {
    const char *ptr; /* NULL: field absent on this line */
    Py_ssize_t len;
} Slice;

typedef struct {
    uint64_t hash;
    Py_ssize_t offset; /* into the arena; -1: empty slot */
    Py_ssize_t len;
    Py_ssize_t index; /* creation order: the label tuple's index in the result */
    uint64_t measures[MAX_MEASURES];
} Entry;

typedef struct {
    Entry *slots;
    Py_ssize_t capacity; /* power of two */
    Py_ssize_t used;
    char *arena;
    Py_ssize_t arena_len;
    Py_ssize_t arena_cap;
} Table;

typedef struct {
    double *bounds;
    Py_ssize_t nbounds; /* -1: a summed column without a histogram */
    Py_ssize_t *counts; /* nbounds + 1 */
    uint64_t sum;
    Py_ssize_t observed;
} Hist;

static uint64_t hash_bytes(const char *data, Py_ssize_t len) {
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a: short keys, no dependency */
    for (Py_ssize_t i = 0; i < len; i++) {
        hash ^= (unsigned char)data[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

static int table_init(Table *table) {
    table->capacity = 64;
    table->used = 0;
    table->slots = PyMem_RawMalloc(sizeof(Entry) * table->capacity);
    table->arena_cap = 4096;
    table->arena_len = 0;
    table->arena = PyMem_RawMalloc(table->arena_cap);
    if (table->slots == NULL || table->arena == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < table->capacity; i++) {
        table->slots[i].offset = -1;
    }
    return 0;
}

static void table_free(Table *table) {
    PyMem_RawFree(table->slots);
    PyMem_RawFree(table->arena);
}

static int table_grow(Table *table) {
    Py_ssize_t capacity = table->capacity * 2;
    Entry *slots = PyMem_RawMalloc(sizeof(Entry) * capacity);
    if (slots == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < capacity; i++) {
        slots[i].offset = -1;
    }
    for (Py_ssize_t i = 0; i < table->capacity; i++) {
        Entry *entry = &table->slots[i];
        if (entry->offset < 0) {
            continue;
        }
        Py_ssize_t at = (Py_ssize_t)(entry->hash & (uint64_t)(capacity - 1));
        while (slots[at].offset >= 0) {
            at = (at + 1) & (capacity - 1);
        }
        slots[at] = *entry;
    }
    PyMem_RawFree(table->slots);
    table->slots = slots;
    table->capacity = capacity;
    return 0;
}

/* Add one client's measures (1, idle past the threshold, its summed values) under `key`;
 * `*index` is the tuple's index. 0: ok; -1: out of memory; 1: a sum overflowed (give up). */
static int table_add(Table *table, const char *key, Py_ssize_t len, const uint64_t *measures,
                     Py_ssize_t nmeasures, Py_ssize_t *index) {
    uint64_t hash = hash_bytes(key, len);
    Py_ssize_t mask = table->capacity - 1;
    Py_ssize_t at = (Py_ssize_t)(hash & (uint64_t)mask);
    for (;;) {
        Entry *entry = &table->slots[at];
        if (entry->offset < 0) {
            break;
        }
        if (entry->hash == hash && entry->len == len
                && memcmp(table->arena + entry->offset, key, len) == 0) {
            for (Py_ssize_t i = 0; i < nmeasures; i++) {
                if (__builtin_add_overflow(entry->measures[i], measures[i],
                                           &entry->measures[i])) {
                    return 1;
                }
            }
            *index = entry->index;
            return 0;
        }
        at = (at + 1) & mask;
    }
    if (table->arena_len + len > table->arena_cap) {
        Py_ssize_t cap = (table->arena_cap + len) * 2;
        char *arena = PyMem_RawRealloc(table->arena, cap);
        if (arena == NULL) {
            return -1;
        }
        table->arena = arena;
        table->arena_cap = cap;
    }
    memcpy(table->arena + table->arena_len, key, len);
    Entry *entry = &table->slots[at];
    entry->hash = hash;
    entry->offset = table->arena_len;
    entry->len = len;
    entry->index = *index = table->used;
    memcpy(entry->measures, measures, sizeof(uint64_t) * nmeasures);
    table->arena_len += len;
    table->used++;
    if (table->used * 2 > table->capacity) {
        return table_grow(table);
    }
    return 0;
}

/* The label tuple of one entry: its key holds, per field, a presence byte, a length, bytes. */
static PyObject *entry_labels(const Table *table, const Entry *entry, Py_ssize_t fields) {
    PyObject *labels = PyTuple_New(fields);
    if (labels == NULL) {
        return NULL;
    }
    const char *at = table->arena + entry->offset;
    for (Py_ssize_t i = 0; i < fields; i++) {
        PyObject *value;
        char present = *at++;
        if (present) {
            Py_ssize_t len;
            memcpy(&len, at, sizeof(len));
            at += sizeof(len);
            value = PyBytes_FromStringAndSize(at, len);
            at += len;
            if (value == NULL) {
                Py_DECREF(labels);
                return NULL;
            }
        } else {
            value = Py_NewRef(Py_None);
        }
        PyTuple_SET_ITEM(labels, i, value);
    }
    return labels;
}

static int is_blank(const char *line, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i < len; i++) {
        switch (line[i]) {
        case ' ': case '\t': case '\r': case '\v': case '\f':
            continue;
        default:
            return 0;
        }
    }
    return 1;
}

/* -1: not all digits (or empty); -2: too long to be exact; else the value. */
static int64_t parse_digits(const char *ptr, Py_ssize_t len) {
    if (len == 0) {
        return -1;
    }
    if (len > MAX_DIGITS) {
        for (Py_ssize_t i = 0; i < len; i++) {
            if (ptr[i] < '0' || ptr[i] > '9') {
                return -1;
            }
        }
        return -2;
    }
    int64_t value = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned digit = (unsigned char)ptr[i] - '0';
        if (digit > 9) {
            return -1;
        }
        value = value * 10 + digit;
    }
    return value;
}

/* bisect_left over the bounds: the first bucket whose bound is >= value. */
static Py_ssize_t bucket_of(const Hist *hist, double value) {
    Py_ssize_t low = 0, high = hist->nbounds;
    while (low < high) {
        Py_ssize_t mid = (low + high) / 2;
        if (hist->bounds[mid] < value) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    return low;
}

static int read_keys(PyObject *seq, Key *keys, Py_ssize_t *count, const char *what) {
    PyObject *items = PySequence_Fast(seq, what);
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n > MAX_FIELDS) {
        Py_DECREF(items);
        PyErr_Format(PyExc_ValueError, "%s: at most %d fields", what, MAX_FIELDS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if (item == Py_None) {
            keys[i].name = NULL; /* not reported by this server: always absent */
            keys[i].len = 0;
        } else if (PyBytes_Check(item)) {
            keys[i].name = PyBytes_AS_STRING(item); /* kept alive by the caller's tuple */
            keys[i].len = PyBytes_GET_SIZE(item);
        } else {
            Py_DECREF(items);
            PyErr_Format(PyExc_TypeError, "%s: bytes or None expected", what);
            return -1;
        }
    }
    *count = n;
    Py_DECREF(items);
    return 0;
}

/* The sampled field order; only its first MAX_ORDER keys are used. */
static int read_order(PyObject *seq, Key *keys, Py_ssize_t *count) {
    PyObject *items = PySequence_Fast(seq, "order");
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    *count = n < MAX_ORDER ? n : MAX_ORDER;
    for (Py_ssize_t i = 0; i < *count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if (!PyBytes_Check(item)) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_TypeError, "order: bytes expected");
            return -1;
        }
        keys[i].name = PyBytes_AS_STRING(item); /* kept alive by the caller's tuple */
        keys[i].len = PyBytes_GET_SIZE(item);
    }
    Py_DECREF(items);
    return 0;
}

static int read_bounds(PyObject *seq, Hist *hists, Py_ssize_t count) {
    PyObject *items = PySequence_Fast(seq, "bounds");
    if (items == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(items) != count) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "one bounds tuple per numeric key");
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if (item == Py_None) {
            hists[i].nbounds = -1;
            continue;
        }
        PyObject *bounds = PySequence_Fast(item, "bounds");
        if (bounds == NULL) {
            Py_DECREF(items);
            return -1;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(bounds);
        hists[i].nbounds = n;
        hists[i].bounds = PyMem_Malloc(sizeof(double) * (n + 1));
        hists[i].counts = PyMem_Calloc(n + 1, sizeof(Py_ssize_t));
        if (hists[i].bounds == NULL || hists[i].counts == NULL) {
            Py_DECREF(bounds);
            Py_DECREF(items);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t j = 0; j < n; j++) {
            hists[i].bounds[j] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(bounds, j));
        }
        Py_DECREF(bounds);
        if (PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
    }
    Py_DECREF(items);
    return 0;
}

/* One client of a tracked snapshot. */
typedef struct {
    int64_t id;
    Py_ssize_t position; /* in the reply: ties of a (malformed) repeated id keep reply order */
    int32_t combo;       /* index of its label tuple */
    uint64_t traffic[TRAFFIC];
} Tracked;

/* One key the scanner reads: where its value goes. Keys are found through a 256-slot table
 * hashed on (length, first byte, last byte), so an unwanted key costs one probe. */
typedef struct {
    const char *name;
    Py_ssize_t len;
    int group;   /* index into the label fields, or -1 */
    int numeric; /* index into the numeric keys, or -1 */
    int client;  /* `id` or `addr`: the line is a client line */
} Wanted;

#define MAX_WANTED (2 * MAX_FIELDS + 2)
#define SLOTS 256

/* The key expected at one position of a line: one memcmp instead of a byte loop and a
 * lookup, while a line follows the server's field order (it always does in practice). */
typedef struct {
    const char *name;
    Py_ssize_t len;
    const Wanted *wanted;
} Field;

typedef struct {
    Key group_keys[MAX_FIELDS];
    Py_ssize_t ngroup;
    Key numeric_keys[MAX_FIELDS];
    Py_ssize_t nnumeric;
    Wanted wanted[MAX_WANTED];
    int nwanted;
    unsigned char slots[SLOTS]; /* wanted index + 1; 0: empty */
    Field order[MAX_ORDER];     /* the server's field order, from the caller's sample */
    Py_ssize_t norder;
    Py_ssize_t picks[MAX_ORDER]; /* positions in the order of the wanted keys, ascending */
    Py_ssize_t npicks;           /* 0: no fast path, every line is read token by token */
    Hist hists[MAX_FIELDS];    /* one per numeric key; nbounds -1: summed only */
    Py_ssize_t sums[MAX_SUMS]; /* numeric key of each sum; -1: the server lacks it */
    Py_ssize_t nsums;
    Py_ssize_t idle_index; /* numeric key whose value is compared with the threshold */
    double threshold;
    Table table;
    char *scratch; /* one line's label key */
    Py_ssize_t clients;
    Py_ssize_t malformed;
    Py_ssize_t track[4]; /* numeric key of id, tot-net-in, tot-net-out, tot-cmds; -1: none */
    Tracked *tracked;    /* NULL: not tracking */
    Py_ssize_t ntracked, tracked_cap;
    int tracked_sorted;  /* ids came in increasing order: no sort needed */
} Scan;

/* After read_keys: each summed column's index in the numeric keys, or -1. */
static int read_sums(PyObject *seq, Scan *scan) {
    PyObject *items = PySequence_Fast(seq, "sums");
    if (items == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    if (n > MAX_SUMS) {
        Py_DECREF(items);
        PyErr_Format(PyExc_ValueError, "sums: at most %d columns", MAX_SUMS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t index = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(items, i));
        if (index == -1 && PyErr_Occurred()) {
            Py_DECREF(items);
            return -1;
        }
        if (index < -1 || index >= scan->nnumeric) {
            Py_DECREF(items);
            PyErr_SetString(PyExc_ValueError, "sums: index out of range");
            return -1;
        }
        scan->sums[i] = index;
    }
    scan->nsums = n;
    Py_DECREF(items);
    return 0;
}

/* After read_keys: None (no tracking) or the numeric-key indices of id and the traffic
 * counters. Tracking starts with room for 1,024 clients and doubles. */
static int read_track(PyObject *seq, Scan *scan) {
    if (seq == Py_None) {
        return 0;
    }
    PyObject *items = PySequence_Fast(seq, "track");
    if (items == NULL) {
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(items) != 1 + TRAFFIC) {
        Py_DECREF(items);
        PyErr_SetString(PyExc_ValueError, "track: (id, net_in, net_out, cmds) indices");
        return -1;
    }
    for (Py_ssize_t i = 0; i <= TRAFFIC; i++) {
        Py_ssize_t index = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(items, i));
        if ((index == -1 && PyErr_Occurred()) || index < -1 || index >= scan->nnumeric) {
            Py_DECREF(items);
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "track: index out of range");
            }
            return -1;
        }
        scan->track[i] = index;
    }
    Py_DECREF(items);
    if (scan->track[0] < 0) {
        return 0;  /* no id column: nothing to track */
    }
    scan->tracked_cap = 1024;
    scan->tracked = PyMem_RawMalloc(sizeof(Tracked) * scan->tracked_cap);
    if (scan->tracked == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static unsigned slot_hash(const char *key, Py_ssize_t len) {
    return ((unsigned)len * 31u + (unsigned char)key[0] * 7u
            + (unsigned char)key[len - 1]) & (SLOTS - 1);
}

static Wanted *wanted_entry(Scan *scan, const char *name, Py_ssize_t len) {
    for (int i = 0; i < scan->nwanted; i++) {
        if (scan->wanted[i].len == len && memcmp(scan->wanted[i].name, name, len) == 0) {
            return &scan->wanted[i];
        }
    }
    Wanted *entry = &scan->wanted[scan->nwanted++];
    entry->name = name;
    entry->len = len;
    entry->group = entry->numeric = -1;
    entry->client = 0;
    unsigned at = slot_hash(name, len);
    while (scan->slots[at]) {
        at = (at + 1) & (SLOTS - 1);
    }
    scan->slots[at] = (unsigned char)scan->nwanted;
    return entry;
}

static void build_wanted(Scan *scan) {
    memset(scan->slots, 0, sizeof(scan->slots));
    scan->nwanted = 0;
    wanted_entry(scan, "id", 2)->client = 1;
    wanted_entry(scan, "addr", 4)->client = 1;
    for (Py_ssize_t i = 0; i < scan->ngroup; i++) {
        if (scan->group_keys[i].name != NULL && scan->group_keys[i].len > 0) {
            wanted_entry(scan, scan->group_keys[i].name, scan->group_keys[i].len)->group = (int)i;
        }
    }
    for (Py_ssize_t i = 0; i < scan->nnumeric; i++) {
        if (scan->numeric_keys[i].name != NULL && scan->numeric_keys[i].len > 0) {
            wanted_entry(scan, scan->numeric_keys[i].name,
                         scan->numeric_keys[i].len)->numeric = (int)i;
        }
    }
}

static const Wanted *find_wanted(const Scan *scan, const char *key, Py_ssize_t len) {
    unsigned at = slot_hash(key, len);
    while (scan->slots[at]) {
        const Wanted *entry = &scan->wanted[scan->slots[at] - 1];
        if (entry->len == len && memcmp(entry->name, key, len) == 0) {
            return entry;
        }
        at = (at + 1) & (SLOTS - 1);
    }
    return NULL;
}

/* Keys are a few bytes long: a loop beats a call to memcmp. */
static inline int same_bytes(const unsigned char *a, const char *b, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i < len; i++) {
        if (a[i] != (unsigned char)b[i]) {
            return 0;
        }
    }
    return 1;
}

/* After build_wanted. The fast path needs every wanted key and a client key (id or addr) in
 * the order; else each line is read token by token. */
static void build_order(Scan *scan) {
    int client_key = 0;
    scan->npicks = 0;
    for (Py_ssize_t i = 0; i < scan->norder; i++) {
        Field *field = &scan->order[i];
        field->wanted = field->len > 0 ? find_wanted(scan, field->name, field->len) : NULL;
        if (field->wanted != NULL) {
            scan->picks[scan->npicks++] = i;
            client_key |= field->wanted->client;
        }
    }
    if (!client_key || scan->norder >= MAX_ORDER) {
        scan->npicks = 0;
    }
}

/* Where tokens end (spaces), 64 bytes at a time: with SSE2 skipping a token costs a shift
 * and a count-trailing-zeros instead of a byte loop whose exit the CPU mispredicts. */
typedef struct {
    const unsigned char *base; /* window start; NULL before the first one */
    uint64_t mask;             /* bit i: base[i] is a space */
} Stops;

#if defined(__SSE2__)
static inline uint64_t stop_mask(const unsigned char *p) {
    const __m128i space = _mm_set1_epi8(' ');
    uint64_t mask = 0;
    for (int i = 0; i < 4; i++) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(p + 16 * i));
        mask |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, space)) << (16 * i);
    }
    return mask;
}
#endif

#if defined(__SSE2__)
/* Make the window hold p, loading one at p when it does not; 0 when fewer than 64 bytes
 * remain before `end` (the reply's end): the caller goes on byte by byte. */
static inline int window_at(Stops *stops, const unsigned char *p, const unsigned char *end) {
    if (stops->base != NULL && p >= stops->base && p < stops->base + 64) {
        return 1;
    }
    if (end - p < 64) {
        return 0;
    }
    stops->base = p;
    stops->mask = stop_mask(p);
    return 1;
}
#endif

/* The first space at or after p and before `limit` (the line's end), else `limit`. */
static inline const unsigned char *next_space(Stops *stops, const unsigned char *p,
                                              const unsigned char *limit,
                                              const unsigned char *end) {
#if defined(__SSE2__)
    while (p < limit && window_at(stops, p, end)) {
        uint64_t mask = stops->mask >> (p - stops->base);
        if (mask != 0) {
            const unsigned char *space = p + __builtin_ctzll(mask);
            return space < limit ? space : limit;
        }
        p = stops->base + 64;
    }
#else
    (void)stops;
    (void)end;
#endif
    while (p < limit && *p != ' ') {
        p++;
    }
    return p < limit ? p : limit;
}

/* The start of the token `count` tokens after the one at p, or NULL when the line ends
 * first: within a window, one popcount and a bit-clear per token. */
static inline const unsigned char *skip_tokens(Stops *stops, const unsigned char *p,
                                               Py_ssize_t count,
                                               const unsigned char *line_end,
                                               const unsigned char *end) {
#if defined(__SSE2__)
    while (count > 0 && p < line_end && window_at(stops, p, end)) {
        uint64_t mask = stops->mask >> (p - stops->base);
        Py_ssize_t spaces = __builtin_popcountll(mask);
        if (spaces >= count) {
            while (--count > 0) {
                mask &= mask - 1;
            }
            const unsigned char *space = p + __builtin_ctzll(mask);
            return space < line_end ? space + 1 : NULL;
        }
        count -= spaces;  /* spaces past line_end only make p pass it: NULL below */
        p = stops->base + 64;
    }
#endif
    for (; count > 0; count--) {
        const unsigned char *space = next_space(stops, p, line_end, end);
        if (space >= line_end) {
            return NULL;
        }
        p = space + 1;
    }
    return p;
}

/* Line state: the wanted values seen so far. */
typedef struct {
    Slice groups[MAX_FIELDS];
    int64_t numbers[MAX_FIELDS];
    int client;
    int nonblank;
} Line;

static void line_reset(const Scan *scan, Line *line) {
    for (Py_ssize_t i = 0; i < scan->ngroup; i++) {
        line->groups[i].ptr = NULL;
    }
    for (Py_ssize_t i = 0; i < scan->nnumeric; i++) {
        line->numbers[i] = -1;
    }
    line->client = 0;
    line->nonblank = 0;
}

/* Append one client to the tracked snapshot. 0: ok; -1: out of memory. */
static int track_client(Scan *scan, const Line *line, Py_ssize_t index) {
    if (scan->ntracked == scan->tracked_cap) {
        Py_ssize_t cap = scan->tracked_cap * 2;
        Tracked *grown = PyMem_RawRealloc(scan->tracked, sizeof(Tracked) * cap);
        if (grown == NULL) {
            return -1;
        }
        scan->tracked = grown;
        scan->tracked_cap = cap;
    }
    Tracked *client = &scan->tracked[scan->ntracked];
    client->id = line->numbers[scan->track[0]];
    client->position = scan->ntracked;
    client->combo = (int32_t)index;
    for (int i = 0; i < TRAFFIC; i++) {
        Py_ssize_t key = scan->track[1 + i];
        int64_t value = key >= 0 ? line->numbers[key] : -1;
        client->traffic[i] = value > 0 ? (uint64_t)value : 0;
    }
    if (scan->ntracked > 0 && client->id <= scan->tracked[scan->ntracked - 1].id) {
        scan->tracked_sorted = 0;
    }
    scan->ntracked++;
    return 0;
}

static int by_id(const void *a, const void *b) {
    const Tracked *x = a, *y = b;
    if (x->id != y->id) {
        return x->id < y->id ? -1 : 1;
    }
    return x->position < y->position ? -1 : (x->position > y->position);
}

/* Runs without the GIL. 0: ok; -1: out of memory; 1: give up (the pure path takes over). */
static int line_done(Scan *scan, Line *line) {
    if (!line->client) {
        scan->malformed += line->nonblank;
        return 0;
    }
    scan->clients++;
    char *out = scan->scratch;
    for (Py_ssize_t i = 0; i < scan->ngroup; i++) {
        if (line->groups[i].ptr == NULL) {
            *out++ = 0;
            continue;
        }
        *out++ = 1;
        memcpy(out, &line->groups[i].len, sizeof(Py_ssize_t));
        out += sizeof(Py_ssize_t);
        memcpy(out, line->groups[i].ptr, line->groups[i].len);
        out += line->groups[i].len;
    }
    for (Py_ssize_t i = 0; i < scan->nnumeric; i++) {
        int64_t number = line->numbers[i];
        Hist *hist = &scan->hists[i];
        if (number < 0 || hist->nbounds < 0) {
            continue;
        }
        hist->counts[bucket_of(hist, (double)number)]++;
        if (__builtin_add_overflow(hist->sum, (uint64_t)number, &hist->sum)) {
            return 1;
        }
        hist->observed++;
    }
    uint64_t measures[MAX_MEASURES];
    measures[0] = 1;
    measures[1] = scan->idle_index >= 0 && line->numbers[scan->idle_index] >= 0
        && (double)line->numbers[scan->idle_index] > scan->threshold;
    for (Py_ssize_t i = 0; i < scan->nsums; i++) {
        int64_t number = scan->sums[i] >= 0 ? line->numbers[scan->sums[i]] : -1;
        measures[2 + i] = number >= 0 ? (uint64_t)number : 0;
    }
    Py_ssize_t index;
    int status = table_add(&scan->table, scan->scratch, out - scan->scratch, measures,
                           2 + scan->nsums, &index);
    if (status != 0 || scan->tracked == NULL || line->numbers[scan->track[0]] < 0) {
        return status;
    }
    return track_client(scan, line, index);
}

static int take_value(Line *line, const Wanted *wanted, const unsigned char *value,
                      const unsigned char *value_end) {
    line->client |= wanted->client;
    if (wanted->group >= 0) {
        line->groups[wanted->group].ptr = (const char *)value;
        line->groups[wanted->group].len = value_end - value;
    }
    if (wanted->numeric >= 0) {
        int64_t number = parse_digits((const char *)value, value_end - value);
        if (number == -2) {
            return 1;
        }
        line->numbers[wanted->numeric] = number;
    }
    return 0;
}

/* A line that follows the server's field order: jump from wanted key to wanted key, counting
 * spaces, checking only the wanted keys (every other key is then a duplicate or unwanted).
 * 0: read; 1: give up (huge number); -1: the line does not follow the order (read it token
 * by token instead). */
static int fast_line(Scan *scan, Stops *stops, const unsigned char *p,
                     const unsigned char *line_end, const unsigned char *end, Line *line) {
    Py_ssize_t position = 0;
    for (Py_ssize_t i = 0; i < scan->npicks; i++) {
        if (position < scan->picks[i]) {
            p = skip_tokens(stops, p, scan->picks[i] - position, line_end, end);
            if (p == NULL) {
                return -1;
            }
            position = scan->picks[i];
        }
        const Field *field = &scan->order[position];
        if (line_end - p <= field->len || p[field->len] != '='
                || memcmp(p, field->name, field->len) != 0) {
            return -1;
        }
        const unsigned char *value = p + field->len + 1;
        const unsigned char *value_end = next_space(stops, value, line_end, end);
        if (take_value(line, field->wanted, value, value_end)) {
            return 1;
        }
        p = value_end + 1;
        position++;
    }
    line->nonblank = 1;
    return 0;
}

/* Any line: token by token, each key looked up. 0: read; 1: give up (huge number). */
static int slow_line(Scan *scan, const unsigned char *p, const unsigned char *line_end,
                     Line *line) {
    while (p < line_end) {
        const unsigned char *token = p;
        while (p < line_end && *p != '=' && *p != ' ') {
            p++;
        }
        if (p < line_end && *p == '=') {
            const Wanted *wanted = p > token
                ? find_wanted(scan, (const char *)token, p - token) : NULL;
            const unsigned char *value = p + 1;
            p = value;
            while (p < line_end && *p != ' ') {
                p++;
            }
            line->nonblank = 1;
            if (wanted != NULL && take_value(line, wanted, value, p)) {
                return 1;
            }
        } else if (!is_blank((const char *)token, p - token)) {
            line->nonblank = 1;  /* a token without '=': ignored, but the line is not blank */
        }
        p++;
    }
    return 0;
}

/* The whole reply, line by line. Runs without the GIL. 0: ok; -1: out of memory; 1: give up
 * (the pure path takes over). */
static int scan_reply(Scan *scan, const char *data, Py_ssize_t len) {
    const unsigned char *p = (const unsigned char *)data;
    const unsigned char *end = p + len;
    Stops stops = {NULL, 0};
    Line line;
    while (p < end) {
        const unsigned char *line_end = memchr(p, '\n', end - p);
        if (line_end == NULL) {
            line_end = end;
        }
        line_reset(scan, &line);
        int status = scan->npicks > 0 ? fast_line(scan, &stops, p, line_end, end, &line) : -1;
        if (status < 0) {
            line_reset(scan, &line);
            status = slow_line(scan, p, line_end, &line);
        }
        if (status == 0) {
            status = line_done(scan, &line);
        }
        if (status != 0) {
            return status;
        }
        p = line_end + 1;
    }
    return 0;
}

/* (clients, idle past the threshold, *sums) of one label tuple. */
static PyObject *entry_measures(const Entry *entry, Py_ssize_t count) {
    PyObject *measures = PyTuple_New(count);
    if (measures == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyLong_FromUnsignedLongLong(entry->measures[i]);
        if (value == NULL) {
            Py_DECREF(measures);
            return NULL;
        }
        PyTuple_SET_ITEM(measures, i, value);
    }
    return measures;
}

/* The tracked snapshot as arrays: (ids int64, combos int32, then per traffic counter uint64),
 * each a bytes object in native byte order, sorted by id. */
static PyObject *tracked_arrays(const Scan *scan) {
    Py_ssize_t n = scan->ntracked;
    PyObject *ids = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    PyObject *combos = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int32_t));
    PyObject *traffic[TRAFFIC] = {NULL, NULL, NULL};
    PyObject *result = NULL;
    for (int k = 0; k < TRAFFIC; k++) {
        traffic[k] = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint64_t));
    }
    if (ids != NULL && combos != NULL && traffic[0] != NULL && traffic[1] != NULL
            && traffic[2] != NULL) {
        int64_t *id_out = (int64_t *)PyBytes_AS_STRING(ids);
        int32_t *combo_out = (int32_t *)PyBytes_AS_STRING(combos);
        for (Py_ssize_t i = 0; i < n; i++) {
            id_out[i] = scan->tracked[i].id;
            combo_out[i] = scan->tracked[i].combo;
            for (int k = 0; k < TRAFFIC; k++) {
                ((uint64_t *)PyBytes_AS_STRING(traffic[k]))[i] = scan->tracked[i].traffic[k];
            }
        }
        result = PyTuple_Pack(5, ids, combos, traffic[0], traffic[1], traffic[2]);
    }
    Py_XDECREF(ids);
    Py_XDECREF(combos);
    for (int k = 0; k < TRAFFIC; k++) {
        Py_XDECREF(traffic[k]);
    }
    return result;
}

static PyObject *scan_result(Scan *scan) {
    PyObject *groups = PyList_New(scan->table.used);
    PyObject *hists = PyList_New(scan->nnumeric);
    PyObject *tracked = NULL;
    if (groups == NULL || hists == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < scan->table.capacity; i++) {
        Entry *entry = &scan->table.slots[i];
        if (entry->offset < 0) {
            continue;
        }
        PyObject *labels = entry_labels(&scan->table, entry, scan->ngroup);
        PyObject *counts = labels ? entry_measures(entry, 2 + scan->nsums) : NULL;
        PyObject *pair = counts ? PyTuple_Pack(2, labels, counts) : NULL;
        Py_XDECREF(labels);
        Py_XDECREF(counts);
        if (pair == NULL) {
            goto error;
        }
        PyList_SET_ITEM(groups, entry->index, pair);
    }
    for (Py_ssize_t i = 0; i < scan->nnumeric; i++) {
        Hist *hist = &scan->hists[i];
        if (hist->nbounds < 0) {
            PyList_SET_ITEM(hists, i, Py_NewRef(Py_None));
            continue;
        }
        PyObject *counts = PyTuple_New(hist->nbounds + 1);
        if (counts == NULL) {
            goto error;
        }
        for (Py_ssize_t j = 0; j <= hist->nbounds; j++) {
            PyObject *count = PyLong_FromSsize_t(hist->counts[j]);
            if (count == NULL) {
                Py_DECREF(counts);
                goto error;
            }
            PyTuple_SET_ITEM(counts, j, count);
        }
        PyObject *item = Py_BuildValue("(NKn)", counts, (unsigned long long)hist->sum,
                                       hist->observed);
        if (item == NULL) {
            goto error;
        }
        PyList_SET_ITEM(hists, i, item);
    }
    tracked = scan->tracked != NULL ? tracked_arrays(scan) : Py_NewRef(Py_None);
    if (tracked == NULL) {
        goto error;
    }
    return Py_BuildValue("(nnNNN)", scan->clients, scan->malformed, groups, hists, tracked);
error:
    Py_XDECREF(groups);
    Py_XDECREF(hists);
    return NULL;
}

PyDoc_STRVAR(scan_doc,
"scan(raw, order, group_keys, numeric_keys, bounds, idle_index, threshold, sums, track)\n"
"-> (clients, malformed, [(labels, (count, idle_over, *sums))],\n"
"    [(counts, sum, observed) or None], tracked or None) or None\n\n"
"labels holds one raw value (bytes, or None when absent) per group key; a None key is\n"
"never read. bounds has a tuple per numeric key, or None for a key that is only summed;\n"
"sums has, per summed column, its index in numeric_keys or -1 (never reported). track is\n"
"None or the numeric-key indices of (id, tot-net-in, tot-net-out, tot-cmds), -1 where absent\n"
"(id -1: nothing tracked); tracked is then (ids, combos, net_in, net_out, cmds) as native\n"
"int64/int32/uint64 arrays in bytes, sorted by id, combos indexing the label tuples. None as\n"
"the result: hand the reply to the pure-Python path.");

static PyObject *scan(PyObject *module, PyObject *args) {
    Py_buffer raw;
    PyObject *order_seq, *group_seq, *numeric_seq, *bounds_seq, *sums_seq, *track_seq;
    Key order[MAX_ORDER];
    Scan state;
    PyObject *result = NULL;
    int status = 0;
    if (!PyArg_ParseTuple(args, "y*OOOOndOO", &raw, &order_seq, &group_seq, &numeric_seq,
                          &bounds_seq, &state.idle_index, &state.threshold, &sums_seq,
                          &track_seq)) {
        return NULL;
    }
    memset(state.hists, 0, sizeof(state.hists));
    state.table.slots = NULL;
    state.table.arena = NULL;
    state.scratch = NULL;
    state.clients = 0;
    state.malformed = 0;
    state.nsums = 0;
    state.tracked = NULL;
    state.ntracked = 0;
    state.tracked_cap = 0;
    state.tracked_sorted = 1;
    if (read_order(order_seq, order, &state.norder) < 0
            || read_keys(group_seq, state.group_keys, &state.ngroup, "group_keys") < 0
            || read_keys(numeric_seq, state.numeric_keys, &state.nnumeric, "numeric_keys") < 0
            || read_bounds(bounds_seq, state.hists, state.nnumeric) < 0
            || read_sums(sums_seq, &state) < 0 || read_track(track_seq, &state) < 0) {
        goto done;
    }
    if (state.idle_index >= state.nnumeric) {
        PyErr_SetString(PyExc_ValueError, "idle_index out of range");
        goto done;
    }
    build_wanted(&state);
    for (Py_ssize_t i = 0; i < state.norder; i++) {
        state.order[i].name = order[i].name;
        state.order[i].len = order[i].len;
    }
    build_order(&state);
    const char *data = raw.buf;
    Py_ssize_t len = raw.len;
    /* A line's label key is at most the line plus a header per field. */
    state.scratch = PyMem_Malloc(len + MAX_FIELDS * (1 + sizeof(Py_ssize_t)) + 1);
    if (state.scratch == NULL || table_init(&state.table) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS /* pure C from here: other threads (the web server) run */
    status = scan_reply(&state, data, len);
    if (status == 0 && state.tracked != NULL && !state.tracked_sorted) {
        qsort(state.tracked, state.ntracked, sizeof(Tracked), by_id);
    }
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
    } else if (status > 0) {
        result = Py_NewRef(Py_None);
    } else {
        result = scan_result(&state);
    }
done:
    for (Py_ssize_t i = 0; i < MAX_FIELDS; i++) {
        PyMem_Free(state.hists[i].bounds);
        PyMem_Free(state.hists[i].counts);
    }
    if (state.table.slots != NULL) {
        table_free(&state.table);
    }
    PyMem_Free(state.scratch);
    PyMem_RawFree(state.tracked);
    PyBuffer_Release(&raw);
    return result;
}

/* One side of diff(): the arrays of a tracked snapshot, borrowed from its bytes objects. */
typedef struct {
    const int64_t *ids;
    const int32_t *combos;
    const uint64_t *traffic[TRAFFIC];
    Py_ssize_t n;
    Py_ssize_t ncombos;
} Snapshot;

static int read_snapshot(PyObject *arrays, Py_ssize_t ncombos, Snapshot *out) {
    if (!PyTuple_Check(arrays) || PyTuple_GET_SIZE(arrays) != 2 + TRAFFIC) {
        PyErr_SetString(PyExc_TypeError, "a tracked snapshot: (ids, combos, in, out, cmds)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 2 + TRAFFIC; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(arrays, i))) {
            PyErr_SetString(PyExc_TypeError, "tracked arrays are bytes");
            return -1;
        }
    }
    out->n = PyBytes_GET_SIZE(PyTuple_GET_ITEM(arrays, 0)) / (Py_ssize_t)sizeof(int64_t);
    out->ids = (const int64_t *)PyBytes_AS_STRING(PyTuple_GET_ITEM(arrays, 0));
    out->combos = (const int32_t *)PyBytes_AS_STRING(PyTuple_GET_ITEM(arrays, 1));
    out->ncombos = ncombos;
    if (PyBytes_GET_SIZE(PyTuple_GET_ITEM(arrays, 1)) != out->n * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "tracked arrays differ in length");
        return -1;
    }
    for (int k = 0; k < TRAFFIC; k++) {
        PyObject *column = PyTuple_GET_ITEM(arrays, 2 + k);
        if (PyBytes_GET_SIZE(column) != out->n * (Py_ssize_t)sizeof(uint64_t)) {
            PyErr_SetString(PyExc_ValueError, "tracked arrays differ in length");
            return -1;
        }
        out->traffic[k] = (const uint64_t *)PyBytes_AS_STRING(column);
    }
    for (Py_ssize_t i = 0; i < out->n; i++) {
        if (out->combos[i] < 0 || out->combos[i] >= ncombos) {
            PyErr_SetString(PyExc_ValueError, "a combo index out of range");
            return -1;
        }
    }
    return 0;
}

static PyObject *counts_tuple(const uint64_t *counts, Py_ssize_t n) {
    PyObject *tuple = PyTuple_New(n);
    for (Py_ssize_t i = 0; tuple != NULL && i < n; i++) {
        PyObject *value = PyLong_FromUnsignedLongLong(counts[i]);
        if (value == NULL) {
            Py_CLEAR(tuple);
            break;
        }
        PyTuple_SET_ITEM(tuple, i, value);
    }
    return tuple;
}

PyDoc_STRVAR(diff_doc,
"diff(previous, nprevious, current, ncurrent)\n"
"-> (opened, closed, (net_in, net_out, cmds), monotonic)\n\n"
"Compares two tracked snapshots of scan() (ids sorted; nprevious and ncurrent: how many\n"
"label tuples their combos index) in one merge walk. opened counts, per current tuple, the\n"
"ids that are new; closed, per previous tuple, the ids that are gone; the traffic tuples\n"
"hold per current tuple what its clients added since the previous snapshot (a new id from\n"
"0, a counter that went down adds 0). monotonic is False when a new id is not above the\n"
"previous snapshot's largest: ids are not increasing (a proxy) and churn means nothing.");

static PyObject *diff(PyObject *module, PyObject *args) {
    PyObject *prev_arrays, *cur_arrays;
    Py_ssize_t nprev, ncur;
    Snapshot prev, cur;
    if (!PyArg_ParseTuple(args, "OnOn", &prev_arrays, &nprev, &cur_arrays, &ncur)
            || read_snapshot(prev_arrays, nprev, &prev) < 0
            || read_snapshot(cur_arrays, ncur, &cur) < 0) {
        return NULL;
    }
    uint64_t *opened = PyMem_Calloc(ncur + 1, sizeof(uint64_t));
    uint64_t *closed = PyMem_Calloc(nprev + 1, sizeof(uint64_t));
    uint64_t *traffic[TRAFFIC];
    for (int k = 0; k < TRAFFIC; k++) {
        traffic[k] = PyMem_Calloc(ncur + 1, sizeof(uint64_t));
    }
    PyObject *result = NULL;
    if (opened == NULL || closed == NULL || traffic[0] == NULL || traffic[1] == NULL
            || traffic[2] == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int monotonic = 1;
    int64_t prev_max = prev.n > 0 ? prev.ids[prev.n - 1] : INT64_MIN;
    Py_ssize_t i = 0, j = 0;
    while (i < prev.n || j < cur.n) {
        if (j >= cur.n || (i < prev.n && prev.ids[i] < cur.ids[j])) {
            closed[prev.combos[i++]]++;  /* gone since the previous snapshot */
            continue;
        }
        int32_t combo = cur.combos[j];
        if (i >= prev.n || prev.ids[i] > cur.ids[j]) {  /* new: counted from 0 */
            opened[combo]++;
            monotonic &= cur.ids[j] > prev_max;
            for (int k = 0; k < TRAFFIC; k++) {
                traffic[k][combo] += cur.traffic[k][j];
            }
            j++;
            continue;
        }
        for (int k = 0; k < TRAFFIC; k++) {  /* in both: what it added */
            uint64_t before = prev.traffic[k][i], now = cur.traffic[k][j];
            traffic[k][combo] += now > before ? now - before : 0;
        }
        i++;
        j++;
    }
    PyObject *traffic_tuple = PyTuple_New(TRAFFIC);
    for (int k = 0; traffic_tuple != NULL && k < TRAFFIC; k++) {
        PyObject *column = counts_tuple(traffic[k], ncur);
        if (column == NULL) {
            Py_CLEAR(traffic_tuple);
            break;
        }
        PyTuple_SET_ITEM(traffic_tuple, k, column);
    }
    PyObject *opened_tuple = counts_tuple(opened, ncur);
    PyObject *closed_tuple = counts_tuple(closed, nprev);
    if (traffic_tuple != NULL && opened_tuple != NULL && closed_tuple != NULL) {
        result = Py_BuildValue("(OOOO)", opened_tuple, closed_tuple, traffic_tuple,
                               monotonic ? Py_True : Py_False);
    }
    Py_XDECREF(traffic_tuple);
    Py_XDECREF(opened_tuple);
    Py_XDECREF(closed_tuple);
done:
    PyMem_Free(opened);
    PyMem_Free(closed);
    for (int k = 0; k < TRAFFIC; k++) {
        PyMem_Free(traffic[k]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"diff", diff, METH_VARARGS, diff_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_clientlist_scan",
    "Compiled CLIENT LIST scanner (optional; exporter.clientlist falls back to pure Python).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__clientlist_scan(void) {
    return PyModule_Create(&module);
}
