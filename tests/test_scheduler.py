"""The scheduler's decisions with an injected clock: jitter, cadence, backoff, healthy-first
ordering, keepalive timing, recovery on a successful probe, and targets added and removed
while others run. No threads and no sleeps: `release_due` and `run_next` are the steps the
timer and worker threads loop over; real-server tests prove the same end to end."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from exporter.config.model import PollConfig, ProbeConfig
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Kind
from exporter.poll.cadence import MAX_BACKOFF_SECONDS, Cadence
from exporter.poll.scheduler import POLL, PROBE, Scheduler

INTERVAL = 15.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakePoller:
    """What the scheduler sees of a poller; each poll takes `takes` seconds of fake time."""

    name: str
    clock: Clock
    outcomes: list[bool] = field(default_factory=list)  # next polls' results; then True
    kind: str | None = None  # failure kind reported after a failed poll
    takes: float = 0.1
    keepalive_every: float | None = None
    probe_gets_in: bool = True
    probe_config: ProbeConfig = field(default_factory=lambda: ProbeConfig(enabled=False))
    last_command: float = 0.0
    log: list[tuple[str, float]] = field(default_factory=list)
    closed: bool = False
    failed: bool = False

    @property
    def probe_settings(self) -> ProbeConfig:
        return self.probe_config

    def poll(self) -> bool:
        self.log.append(("poll", self.clock.now))
        self.clock.now += self.takes
        self.last_command = self.clock.now
        self.failed = not (self.outcomes.pop(0) if self.outcomes else True)
        return not self.failed

    def probe(self) -> bool:
        self.log.append(("probe", self.clock.now))
        return self.probe_gets_in

    def failure_kind(self) -> str | None:
        return self.kind if self.failed else None

    def keepalive(self) -> None:
        self.log.append(("keepalive", self.clock.now))
        self.last_command = self.clock.now

    def keepalive_interval(self) -> float | None:
        return self.keepalive_every

    def close(self) -> None:
        self.closed = True

    def polls(self) -> list[float]:
        return [at for what, at in self.log if what == "poll"]


def scheduler(clock: Clock, interval: float = INTERVAL, seed: int = 1) -> Scheduler:
    return Scheduler(PollConfig(interval=interval, client_list_interval=interval, timeout=5.0),
                     Watchdog(clock), clock=clock, rng=random.Random(seed))


def run_until(sched: Scheduler, clock: Clock, until: float, step: float = 0.05) -> None:
    """Advance fake time to `until`, running every step that becomes due."""
    while clock.now < until:
        sched.release_due()
        while sched.run_next(POLL) or sched.run_next(PROBE):
            sched.release_due()
        clock.now = round(clock.now + step, 6)


# -- cadence (pure) -------------------------------------------------------------------------

def test_second_poll_is_at_a_random_phase_then_the_cadence_is_fixed() -> None:
    cadence = Cadence(phase=0.25)
    assert cadence.after_poll(True, False, due=100.0, now=100.1, interval=10.0) == 107.6
    # Due at 107.6, ran late (108.9): the next keeps the cadence, not the lateness.
    assert cadence.after_poll(True, False, due=107.6, now=108.9, interval=10.0) == 117.6
    # So late that the cadence slot passed: one interval from now.
    assert cadence.after_poll(True, False, due=117.6, now=131.0, interval=10.0) == 141.0


def test_failures_back_off_doubling_up_to_five_minutes() -> None:
    cadence = Cadence(phase=0.0)
    waits = [cadence.after_poll(False, False, due=0.0, now=0.0, interval=10.0)
             for _ in range(8)]
    assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, MAX_BACKOFF_SECONDS, 300.0, 300.0]
    assert cadence.failing
    cadence.after_poll(True, False, due=0.0, now=500.0, interval=10.0)
    assert not cadence.failing


def test_backoff_is_never_shorter_than_a_long_interval() -> None:
    cadence = Cadence(phase=0.0)
    for _ in range(10):
        wait = cadence.after_poll(False, False, due=0.0, now=0.0, interval=600.0)
    assert wait == 600.0


def test_a_refused_target_is_retried_every_interval() -> None:
    cadence = Cadence(phase=0.0)
    assert [cadence.after_poll(False, True, due=0.0, now=0.0, interval=10.0)
            for _ in range(5)] == [10.0] * 5


def test_keepalive_wakes_before_the_next_poll_only_when_it_is_sooner() -> None:
    cadence = Cadence(phase=0.0, next_poll=30.0, polls=1)
    assert cadence.next_wake(now=10.0, keepalive=None, last_command=10.0) == 30.0
    assert cadence.next_wake(now=10.0, keepalive=1.5, last_command=9.0) == 11.5
    assert cadence.next_wake(now=10.0, keepalive=50.0, last_command=10.0) == 30.0
    assert cadence.keepalive_only(now=11.5) and not cadence.keepalive_only(now=30.0)


# -- the scheduler, step by step -------------------------------------------------------------

def test_first_polls_come_within_a_second_spread_out() -> None:
    clock = Clock()
    sched = scheduler(clock)
    pollers = [FakePoller(f"t{index}", clock, takes=0.0) for index in range(20)]
    for poller in pollers:
        sched.add(poller)
    run_until(sched, clock, clock.now + 1.01, step=0.01)
    firsts = [poller.polls()[0] - 1000.0 for poller in pollers]
    assert all(0.0 <= first <= 1.0 for first in firsts)
    assert len({round(first, 2) for first in firsts}) > 10  # spread, not all at once


def test_polls_keep_their_cadence_and_spread_over_the_interval() -> None:
    clock = Clock()
    sched = scheduler(clock)
    pollers = [FakePoller(f"t{index}", clock) for index in range(5)]
    for poller in pollers:
        sched.add(poller)
    run_until(sched, clock, 1000.0 + 100.0)
    for poller in pollers:
        polls = poller.polls()
        gaps = [later - earlier for earlier, later in pairwise(polls[2:])]
        assert gaps and all(gap == pytest.approx(INTERVAL, abs=0.06) for gap in gaps)
        # the second poll comes 0.5 to 1.5 intervals after the first
        assert 0.5 * INTERVAL <= polls[1] - polls[0] <= 1.5 * INTERVAL + 0.2
    phases = {round((poller.polls()[2] - 1000.0) % INTERVAL) for poller in pollers}
    assert len(phases) > 2


def test_healthy_targets_go_first_when_workers_are_scarce() -> None:
    clock = Clock()
    sched = scheduler(clock)
    failing = FakePoller("failing", clock, outcomes=[False], kind=Kind.TIMEOUT)
    healthy = FakePoller("healthy", clock)
    sched.add(failing)
    sched.add(healthy)
    run_until(sched, clock, 1001.2)  # both polled once; `failing` failed
    assert failing.polls() and healthy.polls()
    # Both due again at the same moment, the failing one due earlier: healthy runs first.
    clock.now = 1100.0
    sched.release_due()
    assert sched.run_next(POLL) is healthy
    assert sched.run_next(POLL) is failing


def test_a_successful_probe_ends_the_backoff_at_once() -> None:
    clock = Clock()
    sched = scheduler(clock)
    poller = FakePoller("down", clock, outcomes=[False, False, False], kind=Kind.TIMEOUT,
                        probe_config=ProbeConfig(enabled=True, interval=10.0),
                        probe_gets_in=False)
    sched.add(poller)
    run_until(sched, clock, 1000.0 + 1 + 15 + 30 + 2)  # three failures: backed off 60 s
    assert len(poller.polls()) == 3
    poller.probe_gets_in = True
    run_until(sched, clock, clock.now + 10.1)  # the next probe gets in
    assert len(poller.polls()) == 4, "polled at once after the probe got in"
    probe_time = [at for what, at in poller.log if what == "probe"][-1]
    assert poller.polls()[-1] == pytest.approx(probe_time, abs=0.06)


def test_keepalive_pings_between_polls() -> None:
    clock = Clock()
    sched = scheduler(clock)
    poller = FakePoller("cache", clock, keepalive_every=4.0)
    sched.add(poller)
    run_until(sched, clock, 1000.0 + 60.0)
    pings = [at for what, at in poller.log if what == "keepalive"]
    commands = sorted(at for what, at in poller.log if what in ("poll", "keepalive"))
    assert pings
    gaps = [later - earlier for earlier, later in pairwise(commands)]
    assert max(gaps) <= 4.0 + 0.2  # never silent longer than the keepalive interval
    assert len(poller.polls()) <= 60 / INTERVAL + 2  # PINGs do not count as polls


def test_a_removed_target_is_never_polled_again_and_closes() -> None:
    clock = Clock()
    sched = scheduler(clock)
    kept, removed = FakePoller("kept", clock), FakePoller("removed", clock)
    sched.add(kept)
    sched.add(removed)
    run_until(sched, clock, 1030.0)
    kept_before, removed_before = kept.polls(), removed.polls()
    sched.remove(removed)
    assert removed.closed and not kept.closed
    run_until(sched, clock, 1100.0)
    assert removed.polls() == removed_before
    assert sched.pollers() == [kept]
    # The kept target's cadence did not notice: same fixed steps before and after.
    later = kept.polls()[len(kept_before):]
    assert later and all(round(at - kept_before[-1], 1) % INTERVAL == 0 for at in later)


def test_a_target_removed_while_queued_is_skipped_and_closed_by_its_worker() -> None:
    clock = Clock()
    sched = scheduler(clock)
    poller = FakePoller("queued", clock)
    sched.add(poller)
    clock.now += 1.0
    sched.release_due()  # queued for a worker
    sched.remove(poller)
    assert not poller.closed  # a worker holds it: it closes when that worker lets go
    assert sched.run_next(POLL) is poller
    assert poller.closed and poller.polls() == []


def test_adding_a_target_leaves_the_others_cadence_alone() -> None:
    clock = Clock()
    sched = scheduler(clock)
    first = FakePoller("first", clock)
    sched.add(first)
    run_until(sched, clock, 1040.0)
    before = first.polls()
    second = FakePoller("second", clock)
    sched.add(second)
    run_until(sched, clock, 1100.0)
    assert second.polls()[0] <= 1041.0
    later = first.polls()[len(before):]
    assert all(round(at - before[-1], 1) % INTERVAL == 0 for at in later)
