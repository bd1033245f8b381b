"""Pure, single-pass summary of a raw CLIENT LIST reply: groups and histograms.

Two scanners read the reply into the same `RawScan`: the optional compiled one
(`_clientlist_scan.c`, built by `pip install` when a C compiler is there, ~10x faster) and the
pure path (`scan_pure.py`), which is the semantics and the fallback: the compiled scanner gives
up on values the pure path handles better (integers too big for a double) by returning None.
`labels.py` then decodes the raw tuples into groups, the same way for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from exporter.pipeline.columns import (
    FLAGS_KEY,
    GROUP_SOURCES,
    HISTOGRAM_SOURCES,
    ID_KEY,
    IDLE_KEY,
    TRAFFIC_KEYS,
    ClientListSpec,
    Histogram,
    RawReply,
    RawScan,
    Tracked,
)
from exporter.pipeline.groups import COUNTED, SUMMED_COLUMNS, Groups, LabelTuple
from exporter.pipeline.labels import combo_labels, label_groups
from exporter.pipeline.scan_pure import scan_pure

_compiled: ModuleType | None
try:
    from exporter.pipeline import _clientlist_scan as _compiled
except ImportError:  # built without a C compiler: the pure path does the same work
    _compiled = None

# The field order is sampled from the first lines, within this many bytes.
SAMPLE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClientListSummary:
    clients: int  # client lines counted: the groups' connections sum to this
    malformed: int  # lines that were not client lines at all (dropped, logged)
    groups: Groups
    measured: tuple[str, ...]  # the GroupMeasures snapshot fields this server reports
    histograms: dict[str, Histogram]  # absent when the server does not report the field
    # With spec.track: each client (id, tuple, traffic), each tuple's labels and whether its
    # clients count as connections (not a replica's link to its master), tot-* reported.
    tracked: Tracked | None = None
    labels: tuple[LabelTuple, ...] = ()
    counted: tuple[bool, ...] = ()
    traffic: bool = False


def compiled_scanner_available() -> bool:
    return _compiled is not None


def summarize_client_list(raw: RawReply, spec: ClientListSpec, *,
                          compiled: bool = True) -> ClientListSummary:
    """Count clients per group and fill the histograms, in one pass over `raw`.

    `spec.sums` must be the record's `SUMMED_COLUMNS` (the default). `compiled=False` forces
    the pure path (tests and benchmarks compare the two).
    """
    keys = line_keys(bytes(raw[:SAMPLE_BYTES]))
    scan = scan_reply(raw, spec, keys, compiled=compiled)
    measured = (*COUNTED, *(name for name, key in SUMMED_COLUMNS.items() if key in keys))
    labels, counted = combo_labels(scan.combos, spec.group_by) if spec.track else ((), ())
    return ClientListSummary(clients=scan.clients, malformed=scan.malformed,
                             groups=label_groups(scan.combos, spec.group_by),
                             measured=measured, histograms=scan.histograms,
                             tracked=scan.tracked, labels=labels, counted=counted,
                             traffic=all(key in keys for key in TRAFFIC_KEYS))


def scan_reply(raw: RawReply, spec: ClientListSpec, keys: list[bytes], *,
               compiled: bool = True) -> RawScan:
    """The compiled scanner when it is built and takes the reply, else the pure path."""
    if compiled and _compiled is not None:
        scan = _scan_compiled(raw, spec, keys)
        if scan is not None:
            return scan
    # The pure path splits lines into dict keys: those must be bytes.
    return scan_pure(bytes(raw), spec, keys)


def _scan_compiled(raw: RawReply, spec: ClientListSpec, keys: list[bytes]) -> RawScan | None:
    assert _compiled is not None
    present = set(keys) & spec.wanted_keys()
    # Each key once (client_type reads flags too); keys the sampled lines lack are left out,
    # as the pure path leaves them out, and read as None.
    sources = (FLAGS_KEY, *(GROUP_SOURCES[name] for name in spec.group_by))
    group_keys = tuple(dict.fromkeys(key for key in sources if key in present))
    position = {key: index for index, key in enumerate(group_keys)}
    picks = [position.get(key) for key in sources]
    histogram_names = [name for name, key in HISTOGRAM_SOURCES.items() if key in present]
    tracked_keys = (ID_KEY, *TRAFFIC_KEYS) if spec.track else ()
    numeric_keys = tuple(dict.fromkeys(
        (*(HISTOGRAM_SOURCES[name] for name in histogram_names),
         *(key for key in (*spec.sums, *tracked_keys) if key in present))))
    # Summed-only columns come after the histograms' and have no bounds.
    bounds = [*(spec.buckets[name] for name in histogram_names),
              *[None] * (len(numeric_keys) - len(histogram_names))]
    sum_indices = tuple(numeric_keys.index(key) if key in present else -1 for key in spec.sums)
    idle_index = numeric_keys.index(IDLE_KEY) if IDLE_KEY in numeric_keys else -1
    track = (tuple(numeric_keys.index(key) if key in numeric_keys else -1
                   for key in tracked_keys) if spec.track else None)
    result = _compiled.scan(raw, tuple(keys), group_keys, numeric_keys, bounds, idle_index,
                            spec.idle_threshold, sum_indices, track)
    if result is None:
        return None
    clients, malformed, combos, filled, tracked = result
    histograms = {}
    for name, histogram in zip(histogram_names, filled):
        assert histogram is not None
        counts, total, observed = histogram
        histograms[name] = Histogram(spec.buckets[name], counts, float(total), observed)
    if spec.track and tracked is None:  # no id column at all: nobody to track
        tracked = (b"",) * 5
    return RawScan(
        clients=clients, malformed=malformed, histograms=histograms,
        combos={tuple(None if index is None else labels[index] for index in picks): counts
                for labels, counts in combos},
        tracked=Tracked(*tracked) if tracked is not None else None)


def line_keys(raw: bytes, sample_lines: int = 5) -> list[bytes]:
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

