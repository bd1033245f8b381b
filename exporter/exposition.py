"""/metrics body: per-target pre-rendered text joined family by family, plus global metrics.

Built at most once per snapshot generation (gzip too), never per request, never touching Redis.
"""

from __future__ import annotations

import gzip
import threading

from exporter import metrics
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Snapshot, SnapshotStore


def family_header(family: metrics.Family) -> str:
    text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {family.name} {text}\n# TYPE {family.name} {family.type}\n"


_HEADERS = tuple(family_header(family).encode("utf-8") for family in metrics.TARGET_FAMILIES)


def family_parts(snapshots: list[Snapshot]) -> list[bytes]:
    """Every target's text per family, in order, so each family's samples are contiguous."""
    parts: list[bytes] = []
    # zip(*rows) turns the per-target rows into per-family columns in C: the Python loop
    # runs once per family, not once per family and target (~5 ms instead of ~15 ms at
    # 1,000 targets, and one 10 MB copy instead of a join and an encode).
    for header, column in zip(_HEADERS, zip(*(snap.row for snap in snapshots))):
        if any(column):
            parts.append(header)
            parts.extend(column)
    return parts


def assemble(snapshots: list[Snapshot]) -> str:
    return b"".join(family_parts(snapshots)).decode("utf-8")


class Exposition:
    def __init__(self, store: SnapshotStore, self_metrics: SelfMetrics) -> None:
        self._store = store
        self._self_metrics = self_metrics
        self._lock = threading.Lock()
        self._generation = -1
        self._plain = b""
        self._gzipped: bytes | None = None

    def body(self, want_gzip: bool) -> bytes:
        with self._lock:
            generation, snapshots = self._store.read()
            if generation != self._generation:
                # Let go of the old body first: at 1,000 targets it is ~10 MB of peak RSS.
                self._plain, self._gzipped = b"", None
                up = sum(1 for snap in snapshots if snap.polled and snap.up)
                down = sum(1 for snap in snapshots if snap.polled and not snap.up)
                parts = family_parts(snapshots)
                parts.append(self._self_metrics.render(up, down))
                self._plain = b"".join(parts)  # the one copy of the body
                self._generation = generation
            if not want_gzip:
                return self._plain
            if self._gzipped is None:
                # Level 1: ~2.5x faster than 6 on a 10 MB body (~25 ms instead of ~60 ms)
                # for ~25% more bytes; a scrape's latency and CPU matter more than its size.
                self._gzipped = gzip.compress(self._plain, compresslevel=1, mtime=0)
            return self._gzipped
