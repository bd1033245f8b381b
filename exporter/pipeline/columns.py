"""The CLIENT LIST columns the pipeline reads, and the shapes both scanners share.

A scanner (the compiled one or the pure path) turns a raw reply into a `RawScan`: per raw
label tuple (the flags, then one raw value per group_by label) the counts and sums of its
clients, and the histograms. `labels.py` then turns raw tuples into label values.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.pipeline.groups import SUMMED_COLUMNS

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
    "io_thread": b"io-thread",
}
# histogram -> CLIENT LIST key (all non-negative integers).
HISTOGRAM_SOURCES = {
    "idle_seconds": b"idle",
    "age_seconds": b"age",
    "query_buffer_bytes": b"qbuf",
    "output_buffer_bytes": b"omem",
    "memory_bytes": b"tot-mem",
}
# Keys whose values are always integers: matching them with \d is ~2x faster than [^ \n].
INTEGER_KEYS = frozenset({
    b"id", b"fd", b"age", b"idle", b"db", b"sub", b"psub", b"ssub", b"multi", b"watch",
    b"qbuf", b"qbuf-free", b"argv-mem", b"multi-mem", b"rbs", b"rbp", b"obl", b"oll",
    b"omem", b"tot-mem", b"redir", b"resp", b"io-thread", b"tot-net-in", b"tot-net-out",
    b"tot-cmds",
})
# Columns whose values vary per client (a Counter would hold one entry per client).
VARIED_KEYS = frozenset({b"idle", b"age"})
IDLE_KEY = b"idle"
FLAGS_KEY = b"flags"
# A CLIENT LIST reply as the poll connection hands it over (see exporter/conn/resp.py).
RawReply = bytes | bytearray | memoryview
# A line with neither key is no client line (counted as malformed).
CLIENT_KEYS = (b"id", b"addr")
ID_KEY = b"id"
INT64_MAX = (1 << 63) - 1  # ids beyond it are not tracked (the compiled scanner's int64)
UINT64_MAX = (1 << 64) - 1  # traffic sums wrap here, as the compiled scanner's do
# Per-client traffic counters (Valkey 8.0+, Redis 8.2+), in the order tracked snapshots hold.
TRAFFIC_KEYS = (b"tot-net-in", b"tot-net-out", b"tot-cmds")

# (raw flags, one raw value per group_by label); None: the line has no such field.
RawLabels = tuple[bytes | None, ...]
# Per raw label tuple: (clients, clients idle past the threshold, then one sum per spec.sums).
RawCounts = tuple[int, ...]


@dataclass(frozen=True)
class Histogram:
    """Cumulative-ready bucket counts (per bucket, not yet cumulative), sum and count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # one per bound, plus the +Inf overflow at the end
    total: float
    count: int


@dataclass(frozen=True)
class ClientListSpec:
    """What to extract: built once from the config."""

    group_by: tuple[str, ...]
    idle_threshold: float
    buckets: dict[str, tuple[float, ...]]
    # Columns summed per raw label tuple, in this order: by default those of the group record.
    sums: tuple[bytes, ...] = tuple(SUMMED_COLUMNS.values())
    track: bool = False  # also return each client's id, tuple and traffic (a Tracked)

    def numeric_keys(self) -> frozenset[bytes]:
        """Columns read as numbers: histograms, sums, tracked ones; a bad value is not
        counted."""
        tracked = (ID_KEY, *TRAFFIC_KEYS) if self.track else ()
        return frozenset((*HISTOGRAM_SOURCES.values(), *self.sums, *tracked))

    def wanted_keys(self) -> set[bytes]:
        return {FLAGS_KEY, *(GROUP_SOURCES[name] for name in self.group_by),
                *self.numeric_keys()}


@dataclass(frozen=True)
class Tracked:
    """Every client with a valid id, sorted by id (ties: reply order), as native arrays in
    bytes: ids int64, the index of its raw label tuple int32, then its tot-net-in,
    tot-net-out and tot-cmds as uint64 (0 where absent). ~32 bytes per client; what a
    target keeps between CLIENT LISTs for churn and traffic."""

    ids: bytes
    combos: bytes
    net_in: bytes
    net_out: bytes
    cmds: bytes

    def arrays(self) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        return (self.ids, self.combos, self.net_in, self.net_out, self.cmds)


@dataclass(frozen=True)
class RawScan:
    """What a scanner read from one reply, before labels are decoded."""

    clients: int  # client lines counted
    malformed: int  # lines that were not client lines at all (dropped, logged)
    combos: dict[RawLabels, RawCounts]  # in the order their tuples first appear
    histograms: dict[str, Histogram]  # absent when the server does not report the field
    tracked: Tracked | None = None  # with spec.track: each client, indexing `combos`
