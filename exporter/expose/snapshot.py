"""Immutable per-target snapshots and the store that swaps them in atomically."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import InitVar, dataclass, field

from exporter.expose import families as metrics
from exporter.logsetup import kv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics serves for one target: rendered text per family, and its state."""

    target: str
    # Rendered text (str, or already encoded) per family: kept only as `row`, so one target's
    # text is held once, as bytes (at 1,000 targets that is tens of MB less than str + bytes).
    families: InitVar[Mapping[str, str | bytes]]
    up: bool
    polled: bool  # False until the first poll finished
    last_poll_wall: float | None
    error_kind: str | None
    probe: str = ""  # "ok", the kind of the last probe failure, or "" (no probe yet)
    # `families` as bytes in the order of metrics.TARGET_FAMILIES (b"" when absent), encoded
    # once per publish (~10 us): at 1,000 targets /metrics then joins bytes, with neither a
    # 10 MB encode nor ~40,000 dict lookups per scrape.
    row: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self, families: Mapping[str, str | bytes]) -> None:
        object.__setattr__(self, "row", tuple(
            _encoded(families.get(family.name, b"")) for family in metrics.TARGET_FAMILIES))


def _encoded(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


class SnapshotStore:
    """Latest snapshot per target. `generation` changes on every swap, so readers can cache.

    Each target has one owner (its poller) at a time: a poller that was replaced or removed
    while its poll ran cannot publish over its successor, or bring a removed target back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._owners: dict[str, object] = {}  # in target order
        self._generation = 0
        self._identities: dict[tuple[str, str], str] = {}
        self._reported_duplicates: set[frozenset[str]] = set()
        self._polled_waiters: dict[str, list[Future[bool]]] = {}

    @property
    def generation(self) -> int:
        return self._generation

    def add(self, target: str, owner: object) -> None:
        """Serve `target` from `owner`'s snapshots (a new target goes last in the order; a
        replaced one keeps its place, and its last snapshot until the new owner's first)."""
        with self._lock:
            self._owners[target] = owner
            self._generation += 1

    def remove(self, target: str, owner: object) -> None:
        """Stop serving `target`, if `owner` still owns it: its series disappear."""
        with self._lock:
            if self._owners.get(target) is not owner:
                return
            del self._owners[target]
            self._snapshots.pop(target, None)
            self._polled_waiters.pop(target, None)
            self._identities = {key: name for key, name in self._identities.items()
                                if name != target}
            self._generation += 1

    def order(self, targets: tuple[str, ...]) -> None:
        """Serve the targets in this order (the configured one); others keep theirs, after."""
        with self._lock:
            owners = {name: self._owners[name] for name in targets if name in self._owners}
            owners.update(self._owners)
            self._owners = owners
            self._generation += 1

    def touch(self) -> None:
        """A global series changed (the reload gauge): the next /metrics rebuilds its body."""
        with self._lock:
            self._generation += 1

    def put(self, snapshot: Snapshot, owner: object) -> None:
        with self._lock:
            if self._owners.get(snapshot.target) is not owner:
                return
            self._snapshots[snapshot.target] = snapshot
            self._generation += 1
            waiters = self._polled_waiters.pop(snapshot.target, []) if snapshot.polled else []
        for waiter in waiters:
            waiter.set_result(True)

    def when_polled(self, target: str) -> Future[bool]:
        """Done once `target` has a polled snapshot (at once if it has one already): what a
        first scrape of a discovered target waits for, without holding a thread."""
        waiter: Future[bool] = Future()
        with self._lock:
            snapshot = self._snapshots.get(target)
            if snapshot is None or not snapshot.polled:
                self._polled_waiters.setdefault(target, []).append(waiter)
                return waiter
        waiter.set_result(True)
        return waiter

    def read(self) -> tuple[int, list[Snapshot]]:
        """(generation, snapshots in target order) as one consistent view."""
        with self._lock:
            return self._generation, [self._snapshots[name] for name in self._owners
                                      if name in self._snapshots]

    def get(self, target: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(target)

    def claim_identity(self, target: str, run_id: str, port: str) -> None:
        """Log once when two targets turn out to be the same server: they double-count."""
        key = (run_id, port)
        with self._lock:
            owner = self._identities.setdefault(key, target)
            pair = frozenset((owner, target))
            if owner == target or pair in self._reported_duplicates:
                return
            self._reported_duplicates.add(pair)
        log.warning("targets are the same Redis server; their series double-count %s",
                    kv(target=target, other_target=owner))
