"""Runs one cluster or Sentinel entry: reads its topology on the entry's `refresh`, at once
when a node it found newly fails its poll, and at once on a Sentinel's +switch-master;
hands each topology read to `apply` (which adds and removes targets)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from exporter.config.model import TargetConfig
from exporter.conn.subscriber import Subscriber
from exporter.logsetup import kv
from exporter.sources.asking import FoundNode

log = logging.getLogger(__name__)
SWITCH_MASTER = "+switch-master"
WAKE_SECONDS = 1.0  # how often the runner looks at its nodes' polls between reads


class Discovery(Protocol):
    def refresh(self) -> list[FoundNode] | None: ...
    def close(self) -> None: ...


class RefreshTimer:
    """When the next topology read is due. No clock is read here: `now` is given."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0  # the first read is due at once
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        with self._lock:
            return now >= self._next

    def read_at(self, now: float) -> None:
        with self._lock:
            self._next = now + self.interval

    def trigger(self) -> None:
        with self._lock:
            self._next = 0.0

    def polls_failed(self, down: Iterable[str]) -> bool:
        """`down`: the found targets whose last poll failed. A target newly among them makes
        the next read due at once (a failover may have moved it); one that stays down does
        not, or a dead node would re-read the topology every second."""
        down = set(down)
        newly = bool(down - self._down)
        self._down = down
        if newly:
            self.trigger()
        return newly

    def wait(self, now: float) -> float:
        with self._lock:
            return max(0.0, min(WAKE_SECONDS, self._next - now))


class SourceRunner:
    def __init__(self, name: str, discovery: Discovery, interval: float,
                 apply: Callable[[list[FoundNode]], set[str]],
                 is_down: Callable[[str], bool],
                 listen_to: Callable[[], TargetConfig] | None = None, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.discovery = discovery
        self.timer = RefreshTimer(interval)
        self._apply = apply
        self._is_down = is_down
        self._listen_to = listen_to
        self._timeout = timeout
        self._clock = clock
        self._members: set[str] = set()
        self._stopped = threading.Event()
        self._wake = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"source-{self.name}", daemon=True).start()
        if self._listen_to is not None:
            threading.Thread(target=self._listen, name=f"events-{self.name}",
                             daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def trigger(self) -> None:
        self.timer.trigger()
        self._wake.set()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                self._step()
                self._wake.wait(self.timer.wait(self._clock()))
                self._wake.clear()
        finally:
            self.discovery.close()

    def _step(self) -> None:
        now = self._clock()
        if self.timer.due(now):
            self.timer.read_at(now)
            try:
                found = self.discovery.refresh()
            except Exception:  # the loop must outlive any surprise; the last topology stays
                log.exception("topology read failed %s", kv(parent=self.name))
                found = None
            if found is not None and not self._stopped.is_set():
                self._members = self._apply(found)
        self.timer.polls_failed(name for name in self._members if self._is_down(name))

    def _listen(self) -> None:
        """+switch-master as a trigger; after a reconnect, a read (events may be lost)."""
        assert self._listen_to is not None
        first = True
        while not self._stopped.is_set():
            subscriber = Subscriber(self._listen_to(), SWITCH_MASTER, self._timeout)
            try:
                subscriber.open()
                if not first:
                    self.trigger()
                first = False
                while not self._stopped.is_set():
                    if subscriber.wait(WAKE_SECONDS):
                        log.info("sentinel event %s", kv(parent=self.name,
                                                         event=SWITCH_MASTER))
                        self.trigger()
            except Exception as error:
                log.debug("sentinel events lost %s", kv(parent=self.name, err=type(error).__name__))
            finally:
                subscriber.close()
            self._stopped.wait(self.timer.interval)
