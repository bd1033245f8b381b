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

    def numeric_keys(self) -> frozenset[bytes]:
        """Columns read as numbers: histograms and sums; a bad value is not counted."""
        return frozenset((*HISTOGRAM_SOURCES.values(), *self.sums))

    def wanted_keys(self) -> set[bytes]:
        return {FLAGS_KEY, *(GROUP_SOURCES[name] for name in self.group_by),
                *self.numeric_keys()}


@dataclass(frozen=True)
class RawScan:
    """What a scanner read from one reply, before labels are decoded."""

    clients: int  # client lines counted
    malformed: int  # lines that were not client lines at all (dropped, logged)
    combos: dict[RawLabels, RawCounts]
    histograms: dict[str, Histogram]  # absent when the server does not report the field
