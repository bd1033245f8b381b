"""Pure, single-pass summary of a raw CLIENT LIST reply.

One regular expression built from the reply's own field order pulls out only the fields
that the configured groups and histograms need; columns are counted with C-level Counters, so
no Python object is built per client (a dict per client, as redis-py's client_list() does,
costs ~10 us per client). Lines the fast pattern does not match (malformed values, missing or
extra fields) go through a tolerant per-line parser, so they never cost the well-formed ones.

When the optional compiled scanner (`_clientlist_scan.c`, built by `pip install` when a C
compiler is there) is importable it does the same in one C pass, ~10x faster; it gives up on
values the pure path handles better (integers too big for a double) by returning None.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

_compiled: ModuleType | None
try:
    from exporter.pipeline import _clientlist_scan as _compiled
except ImportError:  # built without a C compiler: the pure path does the same work
    _compiled = None

# group_by field -> CLIENT LIST key it reads.
GROUP_SOURCES = {
    "name": b"name",
    "client_type": b"flags",
    "user": b"user",
    "db": b"db",
    "lib_name": b"lib-name",
    "lib_ver": b"lib-ver",
    "cmd": b"cmd",
    "addr_host": b"addr",
    "resp": b"resp",
}
# histogram -> CLIENT LIST key (all non-negative integers).
HISTOGRAM_SOURCES = {
    "idle_seconds": b"idle",
    "age_seconds": b"age",
    "query_buffer_bytes": b"qbuf",
    "output_buffer_bytes": b"omem",
    "memory_bytes": b"tot-mem",
}
NUMERIC_KEYS = frozenset(HISTOGRAM_SOURCES.values())
# Keys whose values are always integers: matching them with \d is ~2x faster than [^ \n].
INTEGER_KEYS = frozenset({
    b"id", b"fd", b"age", b"idle", b"db", b"sub", b"psub", b"ssub", b"multi", b"watch",
    b"qbuf", b"qbuf-free", b"argv-mem", b"multi-mem", b"rbs", b"rbp", b"obl", b"oll",
    b"omem", b"tot-mem", b"redir", b"resp", b"io-thread", b"tot-net-in", b"tot-net-out",
    b"tot-cmds",
})
# Columns whose values vary per client (a Counter would hold one entry per client).
VARIED_KEYS = frozenset({b"idle", b"age"})
# A CLIENT LIST reply as the poll connection hands it over (see exporter/conn/resp.py).
RawReply = bytes | bytearray | memoryview
# The field order is sampled from the first lines, within this many bytes.
SAMPLE_BYTES = 64 * 1024
# A line with neither key is no client line (counted as malformed).
CLIENT_KEYS = (b"id", b"addr")
# Clients that are idle by design: blocked, pubsub, replica, master, monitor.
IDLE_BY_DESIGN_FLAGS = frozenset("bPSMO")


@dataclass(frozen=True)
class Histogram:
    """Cumulative-ready bucket counts (per bucket, not yet cumulative), sum and count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # one per bound, plus the +Inf overflow at the end
    total: float
    count: int


@dataclass(frozen=True)
class ClientListSummary:
    clients: int  # client lines counted: the groups sum to this
    malformed: int  # lines that were not client lines at all (dropped, logged)
    groups: dict[tuple[str, ...], int]
    idle_groups: dict[tuple[str, ...], int]
    histograms: dict[str, Histogram]  # absent when the server does not report the field


@dataclass(frozen=True)
class ClientListSpec:
    """What to extract: built once from the config."""

    group_by: tuple[str, ...]
    idle_threshold: float
    buckets: dict[str, tuple[float, ...]]


def client_type(flags: str) -> str:
    """The connection's type, from its flags, in the order DESIGN.md fixes."""
    if "M" in flags:
        return "master"
    if "O" in flags:
        return "monitor"
    if "S" in flags:
        return "replica"
    if "P" in flags:
        return "pubsub"
    return "normal"


def addr_host(addr: str) -> str:
    """`1.2.3.4:5` -> `1.2.3.4`, `[::1]:5` -> `::1`; unix-socket clients -> `unix`."""
    if addr.startswith("/") or not addr:
        return "unix" if addr else ""
    host = addr.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def compiled_scanner_available() -> bool:
    return _compiled is not None


def summarize_client_list(raw: RawReply, spec: ClientListSpec, *,
                          compiled: bool = True) -> ClientListSummary:
    """Count clients per raw group tuple and fill the histograms, in one pass over `raw`.

    `compiled=False` forces the pure path (tests and benchmarks compare the two).
    """
    keys = _line_keys(bytes(raw[:SAMPLE_BYTES]))
    wanted = _wanted_keys(spec)
    present = [key for key in keys if key in wanted]
    if compiled and _compiled is not None:
        summary = _summarize_compiled(raw, spec, keys, present)
        if summary is not None:
            return summary
    # The pure path splits lines into dict keys: those must be bytes.
    return _summarize_pure(bytes(raw), spec, keys, wanted, present)


def _summarize_compiled(raw: RawReply, spec: ClientListSpec, keys: list[bytes],
                        present: list[bytes]) -> ClientListSummary | None:
    assert _compiled is not None
    # Each key once (client_type reads flags too); keys the sampled lines lack are left out,
    # as the pure path leaves them out, and read as None.
    sources = (b"flags", *(GROUP_SOURCES[name] for name in spec.group_by))
    group_keys = tuple(dict.fromkeys(key for key in sources if key in present))
    position = {key: index for index, key in enumerate(group_keys)}
    picks = [position.get(key) for key in sources]
    histogram_names = [name for name, key in HISTOGRAM_SOURCES.items() if key in present]
    numeric_keys = tuple(HISTOGRAM_SOURCES[name] for name in histogram_names)
    idle_index = numeric_keys.index(b"idle") if b"idle" in numeric_keys else -1
    bounds = [spec.buckets[name] for name in histogram_names]
    result = _compiled.scan(raw, tuple(keys), group_keys, numeric_keys, bounds, idle_index,
                            spec.idle_threshold)
    if result is None:
        return None
    clients, malformed, combos, histograms = result
    picked = ([None if index is None else labels[index] for index in picks]
              for labels in combos)
    groups = _label_groups(((values[0], tuple(values[1:]), *counts)
                            for values, counts in zip(picked, combos.values())), spec)
    return ClientListSummary(
        clients=clients, malformed=malformed, **groups,
        histograms={name: Histogram(bounds[index], counts, float(total), observed)
                    for index, (name, (counts, total, observed))
                    in enumerate(zip(histogram_names, histograms))})


def _summarize_pure(raw: bytes, spec: ClientListSpec, keys: list[bytes], wanted: set[bytes],
                    present: list[bytes]) -> ClientListSummary:
    line_count = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
    rows: Sequence[tuple[bytes | None, ...]] = []
    if len(present) > 1:  # findall returns plain strings, not tuples, for one group
        rows = _fast_pattern(tuple(keys), frozenset(wanted)).findall(raw)
    malformed = 0
    if len(rows) != line_count or _client_lines(raw, keys) != line_count:
        rows, malformed = _tolerant_rows(raw, keys, wanted, present)
    columns = _columns(rows, present)
    integers = {key: _integers(columns[key]) for key in VARIED_KEYS if key in columns}
    groups = _group_counts(columns, integers.get(b"idle"), spec, len(rows))
    return ClientListSummary(  # histograms last: they sort `integers` in place
        clients=len(rows), malformed=malformed,
        histograms=_histograms(columns, integers, spec), **groups)


def _wanted_keys(spec: ClientListSpec) -> set[bytes]:
    wanted = {GROUP_SOURCES[name] for name in spec.group_by}
    wanted.update(HISTOGRAM_SOURCES.values())
    wanted.add(b"flags")
    return wanted


def _line_keys(raw: bytes, sample_lines: int = 5) -> list[bytes]:
    """The server's field order: the keys of the fullest of the first few lines.

    One malformed or truncated line must not hide a field from every other client.
    """
    best: list[bytes] = []
    start = 0
    for _ in range(sample_lines):
        end = raw.find(b"\n", start)
        line = raw[start:] if end < 0 else raw[start:end]
        keys = [token.partition(b"=")[0] for token in line.split(b" ") if b"=" in token]
        if len(keys) > len(best):
            best = keys
        if end < 0:
            break
        start = end + 1
    return best if len(best) > 2 else []


@lru_cache(maxsize=64)
def _fast_pattern(keys: tuple[bytes, ...], wanted: frozenset[bytes]) -> re.Pattern[bytes]:
    """Match from the first wanted field to the last one; no class crosses a newline.

    Fields before the first wanted one are skipped by the regex engine's literal-prefix
    search, and fields after the last one are never read: one match per client line.
    """
    positions = [index for index, key in enumerate(keys) if key in wanted]
    parts = []
    for key in keys[positions[0]:positions[-1] + 1]:
        value = rb"-?\d+" if key in INTEGER_KEYS else rb"[^ \n]*"
        if key in wanted:
            value = rb"(\d+)" if key in NUMERIC_KEYS else b"(" + value + b")"
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


def _tolerant_rows(raw: bytes, keys: list[bytes], wanted: set[bytes], present: list[bytes]
                   ) -> tuple[list[tuple[bytes | None, ...]], int]:
    """Slow path: match line by line; parse the rest field by field, dropping bad values."""
    # A full match proves a client line only when the pattern starts with `id` or `addr`.
    line_pattern = (_fast_pattern(tuple(keys), frozenset(wanted))
                    if present and keys[0] in CLIENT_KEYS else None)
    rows: list[tuple[bytes | None, ...]] = []
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
        rows.append(tuple(_checked(key, fields.get(key)) for key in present))
    return rows, malformed


def _checked(key: bytes, value: bytes | None) -> bytes | None:
    if value is not None and key in NUMERIC_KEYS and not value.isdigit():
        return None
    return value


def _columns(rows: Sequence[tuple[bytes | None, ...]], present: list[bytes]
             ) -> dict[bytes, Sequence[bytes | None]]:
    if not rows:
        return {key: () for key in present}
    return dict(zip(present, zip(*rows)))


def _histograms(columns: dict[bytes, Sequence[bytes | None]],
                integers: dict[bytes, list[int]], spec: ClientListSpec) -> dict[str, Histogram]:
    result = {}
    for name, key in HISTOGRAM_SOURCES.items():
        if key not in columns:
            continue
        if key in integers:
            result[name] = _histogram_sorted(integers[key], spec.buckets[name])
        else:
            result[name] = _histogram_counted(Counter(columns[key]), spec.buckets[name])
    return result


def _integers(column: Sequence[bytes | None]) -> list[int]:
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


def _group_counts(columns: dict[bytes, Sequence[bytes | None]], idle_numbers: list[int] | None,
                  spec: ClientListSpec, rows: int) -> dict[str, dict[tuple[str, ...], int]]:
    threshold = spec.idle_threshold
    flags = columns.get(b"flags", (b"",) * rows)
    idle = columns.get(b"idle", (None,) * rows)
    if idle_numbers is not None and len(idle_numbers) == rows:  # all present: compare in C
        over: Iterable[bool] = map(threshold.__lt__, idle_numbers)
    else:
        over = [value is not None and int(value) > threshold for value in idle]
    group_columns = [columns.get(GROUP_SOURCES[name], (None,) * rows) for name in spec.group_by]
    combined = Counter(zip(flags, over, *group_columns))
    return _label_groups(((flag_value, tuple(raw_labels), count, count if is_over else 0)
                          for (flag_value, is_over, *raw_labels), count in combined.items()),
                         spec)


def _label_groups(combos: Iterable[tuple[bytes | None, tuple[bytes | None, ...], int, int]],
                  spec: ClientListSpec) -> dict[str, dict[tuple[str, ...], int]]:
    """(raw flags, raw group values, clients, clients idle past the threshold) -> label tuples."""
    groups: Counter[tuple[str, ...]] = Counter()
    idle_groups: Counter[tuple[str, ...]] = Counter()
    for flag_value, raw_labels, count, over in combos:
        labels, idle_by_design = _labels_of(spec.group_by, flag_value, raw_labels)
        groups[labels] += count
        if over and not idle_by_design:
            idle_groups[labels] += over
    return {"groups": dict(groups), "idle_groups": dict(idle_groups)}


@lru_cache(maxsize=2048)  # the same raw tuples come back every poll: decode each once
def _labels_of(group_by: tuple[str, ...], flag_value: bytes | None,
               raw_labels: tuple[bytes | None, ...]) -> tuple[tuple[str, ...], bool]:
    """Label values of one raw tuple, and whether its flags make the client idle by design."""
    flag_text = _text(flag_value)
    labels = tuple(
        client_type(flag_text) if name == "client_type" else _CONVERTERS.get(name, _text)(value)
        for name, value in zip(group_by, raw_labels)
    )
    return labels, bool(IDLE_BY_DESIGN_FLAGS.intersection(flag_text))


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


def _host(value: bytes | None) -> str:
    return addr_host(_text(value))


_CONVERTERS = {"addr_host": _host}
