"""Bounded worker pools that poll every target on its interval, probes on their own budget;
targets are added and removed while they run.

Due targets wait in priority queues ordered (failing, due time): when workers are scarce,
healthy targets go first. Each target is in its lane's queue at most once, so it is never
polled twice at the same time. A removed target is never scheduled again and its connection
closes as soon as no worker holds it; the other targets keep their connections and cadence.

`release_due` (the timer's step) and `run_next` (a worker's step) are what the threads loop
over; tests call them directly with a fake clock (tests/test_scheduler.py).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.config.model import PollConfig, ProbeConfig
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Kind
from exporter.logsetup import kv
from exporter.poll.cadence import Cadence

log = logging.getLogger(__name__)

PROBE_WORKERS = 2
POLL, PROBE = "poll", "probe"


class Pollable(Protocol):
    """What the scheduler needs of a target's poller (exporter/poll/poller.py)."""

    name: str
    last_command: float

    @property
    def probe_settings(self) -> ProbeConfig: ...
    def poll(self) -> bool: ...
    def probe(self) -> bool: ...  # True: a new connection got in
    def failure_kind(self) -> str | None: ...
    def keepalive(self) -> None: ...
    def keepalive_interval(self) -> float | None: ...
    def close(self) -> None: ...


@dataclass(eq=False)
class _Entry:
    """A scheduled target: its timing, and what the scheduler knows of its workers.

    `tokens` holds the newest timer per lane: an older timer still in the heap is stale and
    skipped, so a timer can be brought forward without a target ever being queued twice.
    """

    poller: Pollable
    cadence: Cadence
    tokens: dict[str, int] = field(default_factory=lambda: {POLL: 0, PROBE: 0})
    busy: set[str] = field(default_factory=set)  # lanes whose worker runs it now
    removed: bool = False


class Scheduler:
    def __init__(self, poll: PollConfig, watchdog: Watchdog,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._poll = poll
        self._watchdog = watchdog
        self._clock = clock
        self._rng = rng or random.Random()
        self._timers: list[tuple[float, int, str, _Entry, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._lanes: dict[str, queue.PriorityQueue[tuple[int, float, int, _Entry]]] = {
            POLL: queue.PriorityQueue(), PROBE: queue.PriorityQueue()}
        self._entries: dict[int, _Entry] = {}  # by id of the poller
        self._stopping = threading.Event()
        self._started = False
        self._workers = {POLL: 0, PROBE: 0}
        self._threads: list[threading.Thread] = []

    # -- targets come and go -----------------------------------------------------------
    def add(self, poller: Pollable, at_once: bool = False) -> None:
        """Schedule a target: its first poll within a second (random, so that targets
        added together spread out; `at_once`: now, for a scrape that waits for it), its
        first probe within min(probe interval, 5 s)."""
        now = self._clock()
        entry = _Entry(poller, Cadence(self._rng.random()))
        with self._cond:
            self._entries[id(poller)] = entry
        first = 0.0 if at_once else self._rng.uniform(0, min(1.0, self._poll.interval))
        self._at(now + first, POLL, entry)
        probe = poller.probe_settings
        if probe.enabled:
            self._at(now + self._rng.uniform(0, min(probe.interval, 5.0)), PROBE, entry)
        if self._started:
            self._ensure_workers()

    def remove(self, poller: Pollable) -> None:
        """Never schedule the target again; close it now, or when its running step ends."""
        with self._cond:
            entry = self._entries.pop(id(poller), None)
            if entry is None:
                return
            entry.removed = True
            idle = not entry.busy
        if idle:
            poller.close()

    def pollers(self) -> list[Pollable]:
        with self._cond:
            return [entry.poller for entry in self._entries.values()]

    def reconfigure(self, poll: PollConfig) -> None:
        """New poll settings (a reload): later timers use them; workers grow to the new
        concurrency, and those above a lowered one stand by."""
        with self._cond:
            self._poll = poll
        if self._started:
            self._ensure_workers()

    # -- the two steps the threads loop over -------------------------------------------
    def release_due(self) -> float:
        """Move due timers into their lanes; return the seconds until the next timer."""
        with self._cond:
            now = self._clock()
            while self._timers and self._timers[0][0] <= now:
                due, seq, lane, entry, token = heapq.heappop(self._timers)
                if entry.removed or token != entry.tokens[lane]:
                    continue  # removed, or superseded by a newer timer for the same lane
                entry.busy.add(lane)  # queued counts as busy: never queued twice
                self._lanes[lane].put((1 if entry.cadence.failing else 0, due, seq, entry))
            return self._timers[0][0] - now if self._timers else 1.0

    def run_next(self, lane: str, timeout: float = 0.0) -> Pollable | None:
        """Take the most urgent queued target of `lane` and run its step; the target, or None
        when nothing was queued within `timeout`."""
        try:
            _, due, _, entry = self._lanes[lane].get(timeout=timeout) if timeout \
                else self._lanes[lane].get_nowait()
        except queue.Empty:
            return None
        try:
            if not entry.removed and not self._stopping.is_set():
                self._run(lane, entry, due)
        except Exception:  # a bug must not kill the worker: log it, keep polling
            log.exception("unexpected error %s", kv(target=entry.poller.name, lane=lane))
            self._at(self._clock() + self._poll.interval, lane, entry)
        finally:
            self._release(lane, entry)
        return entry.poller

    # -- what one step does -------------------------------------------------------------
    def _run(self, lane: str, entry: _Entry, due: float) -> None:
        poller = entry.poller
        if lane == PROBE:
            got_in = poller.probe()
            self._at(self._clock() + poller.probe_settings.interval, PROBE, entry)
            if got_in:
                self._poll_now_if_failing(entry)
            return
        cadence = entry.cadence
        now = self._clock()
        if cadence.keepalive_only(now):
            poller.keepalive()
        else:
            ok = poller.poll()
            if self._stopping.is_set():
                return
            cadence.after_poll(ok, poller.failure_kind() == Kind.REFUSED, due, self._clock(),
                               self._poll.interval)
        self._at(cadence.next_wake(now, poller.keepalive_interval(), poller.last_command),
                 POLL, entry)

    def _release(self, lane: str, entry: _Entry) -> None:
        with self._cond:
            entry.busy.discard(lane)
            close = entry.removed and not entry.busy
        if close:
            entry.poller.close()

    def _at(self, due: float, lane: str, entry: _Entry) -> None:
        with self._cond:
            if entry.removed:
                return
            entry.tokens[lane] += 1
            heapq.heappush(self._timers, (due, next(self._seq), lane, entry, entry.tokens[lane]))
            self._cond.notify()

    def _poll_now_if_failing(self, entry: _Entry) -> None:
        """A connect probe got in while polls fail: poll at once rather than after the backoff,
        so a target that is back shows up within a probe interval, not minutes later."""
        with self._cond:
            if POLL in entry.busy or not entry.cadence.recovered(self._clock()):
                return
        self._at(entry.cadence.next_poll, POLL, entry)

    # -- threads -----------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        self._ensure_workers()
        self._spawn("timer", self._timer_loop)

    def _ensure_workers(self) -> None:
        with self._cond:
            targets = max(len(self._entries), 1)
            wanted = {POLL: min(self._poll.concurrency, targets),
                      PROBE: min(PROBE_WORKERS, targets)}
            missing = [(lane, index) for lane, count in wanted.items()
                       for index in range(self._workers[lane], count)]
            for lane, count in wanted.items():
                self._workers[lane] = max(self._workers[lane], count)
        for lane, index in missing:
            self._spawn(f"{lane}-{index}", self._work, lane, index)

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _timer_loop(self) -> None:
        while not self._stopping.is_set():
            wait = self.release_due()
            with self._cond:
                self._cond.wait(min(max(wait, 0.0), 1.0))

    def _work(self, lane: str, index: int) -> None:
        while not self._stopping.is_set():
            if lane == POLL and index >= self._poll.concurrency:
                self._stopping.wait(0.2)  # a reload lowered the concurrency: stand by
                continue
            self.run_next(lane, timeout=0.2)

    def stop(self, timeout: float = 2.0) -> None:
        """Abort in-flight sockets, stop the workers and close every poll connection."""
        self._stopping.set()
        self._watchdog.abort_all()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        for poller in self.pollers():
            poller.close()
