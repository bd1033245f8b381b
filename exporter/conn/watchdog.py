"""One thread that enforces the deadline of whole poll steps by shutting their sockets down.

A per-read socket timeout cannot bound a step made of a connect, a handshake and several
replies; shutting the socket down wakes the blocked read at once. Shutdown uses the same
mechanism to close in-flight sockets instead of waiting for them.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from exporter.conn.errors import StepTimeout


class Guard:
    """One guarded step; `expired` tells the step that its socket was shut by the watchdog."""

    __slots__ = ("abort", "deadline", "done", "expired")

    def __init__(self, deadline: float, abort: Callable[[], None]) -> None:
        self.deadline = deadline
        self.abort = abort
        self.expired = False
        self.done = False


class Watchdog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Guard]] = []
        self._active: set[Guard] = set()
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    @contextmanager
    def guard(self, timeout: float, abort: Callable[[], None]) -> Iterator[Guard]:
        entry = Guard(self._clock() + timeout, abort)
        with self._cond:
            if self._stopping:
                entry.expired = True
                raise _stopped()
            heapq.heappush(self._heap, (entry.deadline, next(self._counter), entry))
            self._active.add(entry)
            self._cond.notify()
        try:
            yield entry
        finally:
            with self._cond:
                entry.done = True
                self._active.discard(entry)

    def abort_all(self) -> None:
        """Shut every in-flight socket down (shutdown path) and refuse new guards."""
        with self._cond:
            self._stopping = True
            active = list(self._active)
            self._cond.notify()
        for entry in active:
            entry.expired = True
            _safely(entry.abort)

    def stop(self) -> None:
        self.abort_all()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._clock()
                due = []
                while self._heap and (self._heap[0][0] <= now or self._heap[0][2].done):
                    entry = heapq.heappop(self._heap)[2]
                    if not entry.done:
                        due.append(entry)
                wait = self._heap[0][0] - now if self._heap else None
                if not due:
                    self._cond.wait(wait)
                    continue
            for entry in due:
                entry.expired = True
                _safely(entry.abort)


def _stopped() -> Exception:
    return StepTimeout("exporter is stopping")


def _safely(action: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # aborting a socket that is already gone is fine
        action()
