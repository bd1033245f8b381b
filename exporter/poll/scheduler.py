"""Bounded worker pools that poll every target on its interval, probes on their own budget.

Due targets wait in priority queues ordered (failing, due time): when workers are scarce,
healthy targets go first. Each poller is in its lane's queue at most once, so a target is
never polled twice at the same time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence

from exporter.config.model import PollConfig
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Kind
from exporter.logsetup import kv
from exporter.poll.poller import TargetPoller

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
PROBE_WORKERS = 2
_POLL, _PROBE = "poll", "probe"


class _Plan:
    """Per-target timing: next poll, consecutive failures, cadence phase.

    `tokens` holds the newest timer per lane: an older timer still in the heap is stale and
    skipped, so a timer can be brought forward without a target ever being queued twice.
    """

    __slots__ = ("failures", "next_poll", "phase", "polls", "running", "tokens")

    def __init__(self, phase: float) -> None:
        self.next_poll = 0.0
        self.failures = 0
        self.phase = phase
        self.polls = 0
        self.running = False
        self.tokens = {_POLL: 0, _PROBE: 0}


class Scheduler:
    def __init__(self, pollers: Sequence[TargetPoller], poll: PollConfig, watchdog: Watchdog,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._pollers = list(pollers)
        self._poll = poll
        self._watchdog = watchdog
        self._clock = clock
        self._rng = rng or random.Random()
        self._timers: list[tuple[float, int, str, TargetPoller, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._lanes: dict[str, queue.PriorityQueue[tuple[int, float, int, TargetPoller]]] = {
            _POLL: queue.PriorityQueue(), _PROBE: queue.PriorityQueue()}
        self._plans = {id(p): _Plan(self._rng.random()) for p in self._pollers}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        now = self._clock()
        spread = min(1.0, self._poll.interval)
        for poller in self._pollers:
            self._at(now + self._rng.uniform(0, spread), _POLL, poller)
            probe = poller.target.connect_probe
            if probe.enabled:
                self._at(now + self._rng.uniform(0, min(probe.interval, 5.0)), _PROBE, poller)
        workers = [(_POLL, min(self._poll.concurrency, max(len(self._pollers), 1))),
                   (_PROBE, min(PROBE_WORKERS, max(len(self._pollers), 1)))]
        for lane, count in workers:
            for index in range(count):
                self._spawn(f"{lane}-{index}", self._work, lane)
        self._spawn("timer", self._timer_loop)

    def _spawn(self, name: str, target: Callable[..., None], *args: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _at(self, due: float, lane: str, poller: TargetPoller) -> None:
        with self._cond:
            plan = self._plans[id(poller)]
            plan.tokens[lane] += 1
            heapq.heappush(self._timers, (due, next(self._seq), lane, poller, plan.tokens[lane]))
            self._cond.notify()

    def _poll_now_if_failing(self, poller: TargetPoller) -> None:
        """A connect probe got in while polls fail: poll at once rather than after the backoff,
        so a target that is back shows up within a probe interval, not minutes later."""
        now = self._clock()
        with self._cond:
            plan = self._plans[id(poller)]
            if plan.failures == 0 or plan.running:
                return
            plan.next_poll = now  # due now: a poll, not a keepalive
        self._at(now, _POLL, poller)

    def _timer_loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                now = self._clock()
                while self._timers and self._timers[0][0] <= now:
                    due, seq, lane, poller, token = heapq.heappop(self._timers)
                    plan = self._plans[id(poller)]
                    if token != plan.tokens[lane]:
                        continue  # superseded by a newer timer for the same lane
                    if lane == _POLL:
                        plan.running = True
                    self._lanes[lane].put((1 if plan.failures else 0, due, seq, poller))
                wait = self._timers[0][0] - now if self._timers else 1.0
                self._cond.wait(min(max(wait, 0.0), 1.0))

    def _work(self, lane: str) -> None:
        pending = self._lanes[lane]
        while not self._stopping.is_set():
            try:
                _, due, _, poller = pending.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._stopping.is_set():
                return
            try:
                if lane == _POLL:
                    self._run_poll(poller, due)
                else:
                    poller.probe()
                    self._at(self._clock() + poller.target.connect_probe.interval, _PROBE,
                             poller)
                    if poller.stats.probe_success == 1:
                        self._poll_now_if_failing(poller)
            except Exception:  # a bug must not kill the worker: log it, keep polling
                log.exception("unexpected error %s", kv(target=poller.target.name, lane=lane))
                self._at(self._clock() + self._poll.interval, lane, poller)

    def _run_poll(self, poller: TargetPoller, due: float) -> None:
        plan = self._plans[id(poller)]
        try:
            self._poll_or_ping(poller, plan, due)
        finally:
            with self._cond:
                plan.running = False

    def _poll_or_ping(self, poller: TargetPoller, plan: _Plan, due: float) -> None:
        now = self._clock()
        if plan.polls and now < plan.next_poll:
            poller.keepalive()
        else:
            ok = poller.poll()
            if self._stopping.is_set():
                return
            plan.polls += 1
            plan.next_poll = self._next_poll(plan, poller, ok, due)
        keepalive = poller.keepalive_interval()
        next_due = plan.next_poll
        if keepalive is not None:
            next_due = min(next_due, max(poller.last_command, now) + keepalive)
        self._at(next_due, _POLL, poller)

    def _next_poll(self, plan: _Plan, poller: TargetPoller, ok: bool, due: float) -> float:
        interval = self._poll.interval
        now = self._clock()
        if not ok:
            plan.failures += 1
            if poller.stats.kind == Kind.REFUSED:
                return now + interval  # nothing listens: retrying costs Redis nothing
            doubling = 1 << min(plan.failures - 1, 16)
            return now + min(interval * doubling, max(interval, MAX_BACKOFF_SECONDS))
        plan.failures = 0
        if plan.polls == 1:
            # Second poll at a random phase of the interval: targets spread out over it.
            return now + interval * (0.5 + plan.phase)
        scheduled = max(due, plan.next_poll) + interval
        return scheduled if scheduled > now else now + interval

    def stop(self, timeout: float = 2.0) -> None:
        """Abort in-flight sockets, stop the workers and close every poll connection."""
        self._stopping.set()
        self._watchdog.abort_all()
        self._join(timeout)
        for poller in self._pollers:
            poller.close()

    def drain(self) -> bool:
        """Stop taking work and let in-flight polls and probes finish (a reload: the pollers
        and their connections live on in the next scheduler). False if a worker overran."""
        self._stopping.set()
        return self._join(self._poll.timeout + 1.0)

    def _join(self, timeout: float) -> bool:
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in self._threads)
