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


def assemble(snapshots: list[Snapshot]) -> str:
    """Join every target's text per family, so each family's samples are contiguous."""
    parts: list[str] = []
    for family in metrics.TARGET_FAMILIES:
        chunks = [snap.families[family.name] for snap in snapshots
                  if family.name in snap.families]
        if chunks:
            parts.append(family_header(family))
            parts.extend(chunks)
    return "".join(parts)


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
                up = sum(1 for snap in snapshots if snap.polled and snap.up)
                down = sum(1 for snap in snapshots if snap.polled and not snap.up)
                self._plain = (assemble(snapshots).encode("utf-8")
                               + self._self_metrics.render(up, down))
                self._gzipped = None
                self._generation = generation
            if not want_gzip:
                return self._plain
            if self._gzipped is None:
                self._gzipped = gzip.compress(self._plain, compresslevel=6, mtime=0)
            return self._gzipped
