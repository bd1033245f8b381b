"""When a target is polled next: first poll, spread-out phase, fixed cadence, backoff.

Pure: every decision takes the time (monotonic seconds) and the poll's outcome, so the
scheduler's timing is unit-tested with plain numbers (tests/test_scheduler.py).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BACKOFF_SECONDS = 300.0


@dataclass
class Cadence:
    """One target's timing. `phase` (0..1, drawn once) spreads targets over the interval."""

    phase: float
    next_poll: float = 0.0  # when the next poll (not keepalive) is due
    failures: int = 0  # consecutive failed polls
    polls: int = 0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def keepalive_only(self, now: float) -> bool:
        """Woken before the next poll is due: only a keepalive PING is owed."""
        return self.polls > 0 and now < self.next_poll

    def after_poll(self, ok: bool, refused: bool, due: float, now: float,
                   interval: float) -> float:
        """Record a poll that was due at `due` and ended at `now`; return the next poll time.

        A failing target backs off (interval x 2^k, capped at 5 minutes or the interval if
        longer), except a refused one: nothing listens, so retrying costs Redis nothing. The
        second poll comes at a random phase of the interval, so that targets spread out; then
        the cadence is fixed (a late poll does not shift the ones after it).
        """
        self.polls += 1
        if not ok:
            self.failures += 1
            if refused:
                self.next_poll = now + interval
            else:
                doubling = 1 << min(self.failures - 1, 16)
                self.next_poll = now + min(interval * doubling,
                                           max(interval, MAX_BACKOFF_SECONDS))
            return self.next_poll
        self.failures = 0
        if self.polls == 1:
            self.next_poll = now + interval * (0.5 + self.phase)
            return self.next_poll
        scheduled = max(due, self.next_poll) + interval
        self.next_poll = scheduled if scheduled > now else now + interval
        return self.next_poll

    def next_wake(self, now: float, keepalive: float | None, last_command: float) -> float:
        """The next poll, or a keepalive PING before it when the server's timeout is short."""
        if keepalive is None:
            return self.next_poll
        return min(self.next_poll, max(last_command, now) + keepalive)

    def recovered(self, now: float) -> bool:
        """A connect probe got in while polls fail: poll now rather than after the backoff.
        False when there is nothing to bring forward."""
        if not self.failing:
            return False
        self.next_poll = now
        return True
