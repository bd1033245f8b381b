"""The exporter's own bookkeeping for one target: counters, capabilities, state changes."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from exporter.logsetup import kv

log = logging.getLogger(__name__)

@dataclass
class TargetStats:
    """Mutable; written by the target's poll and probe workers, read when a snapshot renders.

    Every change of a mapping goes through a method that holds `lock`, so a render on another
    worker never sees one half-updated.
    """

    target: str
    client_list_interval: float
    lock: threading.RLock = field(default_factory=threading.RLock)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    last_duration: dict[str, float] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)
    capabilities: dict[str, int] = field(default_factory=dict)
    probe_success: float | None = None
    probe_duration: float | None = None
    probe_kind: str | None = None
    client_list_bytes: int | None = None
    up: bool | None = None  # None until the first poll
    kind: str | None = None  # kind of the current failure of the info step

    def count_error(self, step: str, kind: str) -> None:
        with self.lock:
            self.errors[(step, kind)] += 1

    def finish_step(self, step: str, seconds: float, succeeded_at: float | None) -> None:
        """A step's duration, and its wall-clock time when it succeeded."""
        with self.lock:
            self.last_duration[step] = seconds
            if succeeded_at is not None:
                self.last_success[step] = succeeded_at

    def set_capability(self, name: str, allowed: bool, reason: str = "") -> bool:
        """Record a capability; log and return True only when it changed."""
        value = 1 if allowed else 0
        with self.lock:
            previous = self.capabilities.get(name)
            self.capabilities[name] = value
        if previous == value or (previous is None and allowed):
            return False
        if allowed:
            log.info("capability available again %s", kv(target=self.target, capability=name))
        else:
            log.warning("capability missing %s",
                        kv(target=self.target, capability=name, reason=reason or "denied"))
        return True

    def drop_capability(self, name: str) -> None:
        """The server cannot have it (its version predates it): neither 1 nor 0."""
        with self.lock:
            self.capabilities.pop(name, None)

    def record_up(self) -> None:
        if self.up is not True:
            if self.up is False:
                log.info("target is up again %s", kv(target=self.target))
            else:
                log.info("target is up %s", kv(target=self.target))
        self.up, self.kind = True, None

    def record_down(self, kind: str, message: str) -> None:
        """Log once per change of state or kind, never per poll."""
        if self.up is not False or self.kind != kind:
            log.warning("target is down %s", kv(target=self.target, kind=kind, err=message))
        self.up, self.kind = False, kind

    def record_probe(self, ok: bool, kind: str | None, message: str = "") -> None:
        if kind != self.probe_kind:
            if ok:
                log.info("connect probe succeeds again %s", kv(target=self.target))
            else:
                log.warning("connect probe fails %s",
                            kv(target=self.target, kind=kind, err=message))
        self.probe_success = 1.0 if ok else 0.0
        self.probe_kind = kind
