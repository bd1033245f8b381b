"""The pure-Python CLIENT LIST scanner: the semantics, and the fallback of the compiled one.

One regular expression built from the reply's own field order pulls out only the wanted
fields; columns are counted with C-level Counters, so no Python object is built per client (a
dict per client, as redis-py's client_list() does, costs ~10 us per client). Lines the fast
pattern does not match (malformed values, missing or extra fields) go through a tolerant
per-line parser, so they never cost the well-formed ones.
"""

from __future__ import annotations

import operator
import re
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

from exporter.pipeline.columns import (
    CLIENT_KEYS,
    FLAGS_KEY,
    GROUP_SOURCES,
    HISTOGRAM_SOURCES,
    ID_KEY,
    IDLE_KEY,
    INT64_MAX,
    INTEGER_KEYS,
    TRAFFIC_KEYS,
    UINT64_MAX,
    VARIED_KEYS,
    ClientListSpec,
    Histogram,
    RawCounts,
    RawLabels,
    RawScan,
    Tracked,
)

Row = tuple[bytes | None, ...]
Column = Sequence[bytes | None]


def scan_pure(raw: bytes, spec: ClientListSpec, keys: list[bytes]) -> RawScan:
    """`keys`: the server's field order, sampled from the first lines."""
    wanted = spec.wanted_keys()
    present = [key for key in keys if key in wanted]
    line_count = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    rows: Sequence[Row] = []
    if len(present) > 1:  # findall returns plain strings, not tuples, for one group
        rows = _fast_pattern(tuple(keys), frozenset(wanted), spec.numeric_keys()).findall(raw)
    malformed = 0
    if len(rows) != line_count or _client_lines(raw, keys) != line_count:
        rows, malformed = _tolerant_rows(raw, keys, spec, present)
    columns: dict[bytes, Column] = (dict(zip(present, zip(*rows))) if rows
                                    else {key: () for key in present})
    integers = {key: _integers(columns[key]) for key in VARIED_KEYS if key in columns}
    combos = _combos(columns, integers.get(IDLE_KEY), spec, len(rows))
    tracked = _tracked(columns, combos, spec, len(rows)) if spec.track else None
    return RawScan(clients=len(rows), malformed=malformed, combos=combos,  # histograms last:
                   histograms=_histograms(columns, integers, spec),     # they sort `integers`
                   tracked=tracked)


@lru_cache(maxsize=64)
def _fast_pattern(keys: tuple[bytes, ...], wanted: frozenset[bytes],
                  numeric: frozenset[bytes]) -> re.Pattern[bytes]:
    """Match from the first wanted field to the last one; no class crosses a newline.

    Fields before the first wanted one are skipped by the regex engine's literal-prefix
    search, and fields after the last one are never read: one match per client line.
    """
    positions = [index for index, key in enumerate(keys) if key in wanted]
    parts = []
    for key in keys[positions[0]:positions[-1] + 1]:
        value = rb"-?\d+" if key in INTEGER_KEYS else rb"[^ \n]*"
        if key in wanted:
            value = rb"(\d+)" if key in numeric else b"(" + value + b")"
        parts.append(re.escape(key) + b"=" + value)
    prefix = rb"(?:^|(?<= ))" if positions[0] == 0 else rb" "
    return re.compile(prefix + rb" ".join(parts) + rb"(?= |$)", re.MULTILINE)


def _client_lines(raw: bytes, keys: list[bytes]) -> int:
    """Lines that start with the first key, `id` or `addr` (-1 for other keys): a line
    without either is no client line, and the fast pattern does not read them (~2.5 ms at
    10,000 clients to check here, less than reading them in the pattern)."""
    if not keys or keys[0] not in CLIENT_KEYS:
        return -1
    first = keys[0] + b"="
    return raw.count(b"\n" + first) + raw.startswith(first)


def _tolerant_rows(raw: bytes, keys: list[bytes], spec: ClientListSpec, present: list[bytes]
                   ) -> tuple[list[Row], int]:
    """Slow path: match line by line; parse the rest field by field, dropping bad values."""
    numeric = spec.numeric_keys()
    # A full match proves a client line only when the pattern starts with `id` or `addr`.
    line_pattern = (_fast_pattern(tuple(keys), frozenset(spec.wanted_keys()), numeric)
                    if present and keys[0] in CLIENT_KEYS else None)
    rows: list[Row] = []
    malformed = 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        match = line_pattern.fullmatch(line) if line_pattern else None
        if match is not None:
            rows.append(match.groups())
            continue
        fields = dict(token.partition(b"=")[::2] for token in line.split(b" ") if b"=" in token)
        if b"id" not in fields and b"addr" not in fields:
            malformed += 1  # not a client line at all
            continue
        rows.append(tuple(_checked(fields.get(key), key in numeric) for key in present))
    return rows, malformed


def _checked(value: bytes | None, numeric: bool) -> bytes | None:
    return None if value is not None and numeric and not value.isdigit() else value


def _histograms(columns: dict[bytes, Column], integers: dict[bytes, list[int]],
                spec: ClientListSpec) -> dict[str, Histogram]:
    result = {}
    for name, key in HISTOGRAM_SOURCES.items():
        if key not in columns:
            continue
        if key in integers:
            result[name] = _histogram_sorted(integers[key], spec.buckets[name])
        else:
            result[name] = _histogram_counted(Counter(columns[key]), spec.buckets[name])
    return result


def _integers(column: Column) -> list[int]:
    """The column's values as ints; missing or malformed ones (None) are left out."""
    try:
        return list(map(int, column))  # type: ignore[arg-type]
    except TypeError:
        return [int(value) for value in column if value is not None]


def _histogram_sorted(values: list[int], bounds: tuple[float, ...]) -> Histogram:
    """For columns with many distinct values: sort once, then one bisect per bound."""
    values.sort()
    cumulative = [bisect_right(values, bound) for bound in bounds]
    cumulative.append(len(values))
    counts = [later - earlier for earlier, later in zip([0, *cumulative], cumulative)]
    return Histogram(bounds, tuple(counts), float(sum(values)), len(values))


def _histogram_counted(values: Counter[bytes | None], bounds: tuple[float, ...]) -> Histogram:
    """For columns with few distinct values (buffers are mostly 0): one step per value."""
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    observed = 0
    for value, times in values.items():
        if value is None:
            continue
        number = int(value)
        counts[bisect_left(bounds, number)] += times
        total += number * times
        observed += times
    return Histogram(bounds, tuple(counts), total, observed)


def _tracked(columns: dict[bytes, Column], combos: dict[RawLabels, RawCounts],
             spec: ClientListSpec, rows: int) -> Tracked:
    """Each client's id, raw tuple index (the order `combos` first met them) and traffic."""
    index = {key: position for position, key in enumerate(combos)}
    labels = zip(columns.get(FLAGS_KEY, (None,) * rows),
                 *(columns.get(GROUP_SOURCES[name], (None,) * rows) for name in spec.group_by))
    return tracked_pure(columns.get(ID_KEY, (None,) * rows), [index[key] for key in labels],
                        [columns.get(key, (None,) * rows) for key in TRAFFIC_KEYS])


def _combos(columns: dict[bytes, Column], idle_numbers: list[int] | None,
            spec: ClientListSpec, rows: int) -> dict[RawLabels, RawCounts]:
    """Per raw label tuple: (clients, idle past the threshold, *sums), all in C-level loops."""
    threshold = spec.idle_threshold
    idle = columns.get(IDLE_KEY, (None,) * rows)
    if idle_numbers is not None and len(idle_numbers) == rows:  # all present: compare in C
        over: Iterable[bool] = map(threshold.__lt__, idle_numbers)
    else:
        over = [value is not None and int(value) > threshold for value in idle]
    flags = columns.get(FLAGS_KEY, (None,) * rows)
    groups = [columns.get(GROUP_SOURCES[name], (None,) * rows) for name in spec.group_by]
    result: dict[RawLabels, list[int]] = {}
    # Flat keys: a Counter of flat tuples is ~4% faster than one of (labels, over) pairs.
    for (flag, is_over, *values), count in Counter(zip(flags, over, *groups)).items():
        counts = result.setdefault((flag, *values), [0, 0, *(0,) * len(spec.sums)])
        counts[0] += count
        counts[1] += count if is_over else 0
    labels = list(zip(flags, *groups)) if spec.sums else []  # read once per summed column
    for index, summed in enumerate(spec.sums, start=2):
        if summed not in columns:
            continue
        # Few distinct (tuple, value) pairs (buffers are mostly 0): count them, then multiply.
        for (raw_labels, value), times in Counter(zip(labels, columns[summed])).items():
            if value is not None:
                result[raw_labels][index] += int(value) * times
    return {key: tuple(counts) for key, counts in result.items()}


def tracked_pure(ids: Sequence[bytes | None], combos: Sequence[int],
                 traffic: Sequence[Sequence[bytes | None]]) -> Tracked:
    """The pure scanner's snapshot: one entry per client row with a valid id (as the
    compiled scanner keeps them), sorted by id, ties in reply order. Whole columns are
    converted at once; rows are only picked and sorted when some id is missing, too large
    or out of order (real servers list increasing ids)."""
    numbers = _numbers(ids, INT64_MAX)
    kept = [value for value in numbers if value is not None]
    rows: Sequence[int] = range(len(numbers))
    if len(kept) != len(numbers):
        rows = [row for row, value in enumerate(numbers) if value is not None]
    if not all(map(operator.lt, kept, kept[1:])):
        order = sorted(range(len(kept)), key=kept.__getitem__)  # stable: ties in reply order
        rows, kept = [rows[index] for index in order], [kept[index] for index in order]
    counts = [[value or 0 for value in _numbers(column, UINT64_MAX)] for column in traffic]
    if not isinstance(rows, range):
        combos = [combos[row] for row in rows]
        counts = [[column[row] for row in rows] for column in counts]
    return Tracked(array("q", kept).tobytes(), array("i", combos).tobytes(),
                   *(array("Q", column).tobytes() for column in counts))


def _numbers(column: Sequence[bytes | None], limit: int) -> list[int | None]:
    """A column as ints; missing, or beyond `limit` (the compiled arrays' range): None."""
    try:
        numbers: list[int | None] = list(map(int, column))  # type: ignore[arg-type]
    except TypeError:
        numbers = [None if value is None else int(value) for value in column]
    if max((number for number in numbers if number is not None), default=0) > limit:
        numbers = [None if number is None or number > limit else number for number in numbers]
    return numbers
