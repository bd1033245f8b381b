"""The connect probe: can a new client get in, and if not, why not?

A fresh connection with the poll connection's handshake, a PING, and close, on its own
interval and workers. While the last INFO shows no headroom it connects only every fifth
interval and infers `maxclients` in between: every real attempt at a full Redis adds to
`rejected_connections`, and the exporter must not keep that counter rising by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.config.model import TargetConfig
from exporter.conn import connection as redis_connection
from exporter.conn.errors import HandshakeRefused, classify
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Kind, Step
from exporter.poll.stats import TargetStats

SKIPS_AT_MAXCLIENTS = 4  # at maxclients, probe for real only every 5th interval


class ConnectProbe:
    def __init__(self, target: Callable[[], TargetConfig], timeout: float, watchdog: Watchdog,
                 stats: TargetStats, wall_clock: Callable[[], float],
                 observe: Callable[[str, float], None]) -> None:
        self._target = target  # the poll connection's: a rotated password applies here too
        self._timeout = timeout
        self._watchdog = watchdog
        self._stats = stats
        self._wall = wall_clock
        self._observe = observe
        self._skips = 0

    def run(self, named: bool, full: bool, kind_of: Callable[[BaseException], str],
            describe: Callable[[BaseException], str]) -> None:
        """Probe (or infer, when `full`) and record the result in the target's stats."""
        started = time.monotonic()
        if full and self._skips < SKIPS_AT_MAXCLIENTS:
            self._skips += 1
            self._record(Kind.MAXCLIENTS, "inferred from INFO: no headroom", started)
            return
        self._skips = 0
        try:
            self._connect(named)
        except Exception as error:
            self._record(kind_of(error), describe(error), started)
            return
        self._record(None, "", started)

    def _connect(self, named: bool) -> None:
        try:
            redis_connection.probe(self._target(), self._timeout, named, self._watchdog)
        except HandshakeRefused as refused:
            # The first probe can run before the first poll learnt that the ACL refuses
            # CLIENT SETNAME: that says nothing about whether a client can get in.
            if not (named and refused.command == "SETNAME"
                    and classify(refused) in (Kind.NOPERM, Kind.UNSUPPORTED)):
                raise
            redis_connection.probe(self._target(), self._timeout, False, self._watchdog)

    def _record(self, kind: str | None, message: str, started: float) -> None:
        seconds = time.monotonic() - started
        stats = self._stats
        with stats.lock:
            stats.probe_duration = seconds
            stats.finish_step(Step.PROBE, seconds, self._wall() if kind is None else None)
            if kind is not None:
                stats.count_error(Step.PROBE, kind)
            stats.record_probe(kind is None, kind, message)
        self._observe(Step.PROBE, seconds)
