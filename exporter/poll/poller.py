"""One target's poll: plan the steps, send them in one round trip, digest, render, publish.

The decisions live in `plan.py` (which steps, from what the target knows and the time), the
meaning of the replies in `pipeline/digest.py` (pure); what stays here is the I/O and the
bookkeeping that follows from them: capabilities, errors, durations, up or down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.config.model import Config, ProbeConfig, TargetConfig
from exporter.conn import connection as redis_connection
from exporter.conn.errors import HandshakeRefused, ReplyCut, classify, is_tls_eof, out_of_files_hint
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Capability, Kind, Step
from exporter.expose.render import SelfView, render_redis, render_self
from exporter.expose.snapshot import Snapshot, SnapshotStore
from exporter.logsetup import kv
from exporter.pipeline import steps
from exporter.pipeline.aggregate import AggregateState
from exporter.pipeline.digest import DigestSettings, Finding, PollDigest, TargetMemory
from exporter.poll.credentials import CredentialRotation
from exporter.poll.plan import FirstRound, ListDecision, Planner
from exporter.poll.probe import ConnectProbe
from exporter.poll.stats import TargetStats

log = logging.getLogger(__name__)

Timed = tuple[steps.Reply, float]  # a reply and the monotonic time it was read


@dataclass(frozen=True)
class Placement:
    """The topology's view of a cluster or Sentinel node, set by its source."""

    node_id: str = ""
    health: str = ""


class TargetPoller:
    """Owns one target: its poll connection, its memory and bookkeeping, its snapshot."""

    def __init__(self, target: TargetConfig, config: Config, watchdog: Watchdog,
                 store: SnapshotStore, wall_clock: Callable[[], float] = time.time,
                 observe: Callable[[str, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.name = target.name
        self.config = config
        self.store = store
        self._wall = wall_clock
        self._clock = clock
        self._observe = observe or (lambda step, seconds: None)
        self.conn = redis_connection.PollConnection(target, config.poll.timeout, watchdog)
        self.stats = TargetStats(target.name, config.poll.client_list_interval)
        self.memory = TargetMemory()
        self.settings = DigestSettings(config.client_list, target.max_clients)
        self.planner = Planner(target, config)
        # Redis-derived families of the last poll, encoded once (snapshots share the bytes).
        self._redis_text: dict[str, bytes] = {}  # nothing about Redis until the first poll
        self._probe = ConnectProbe(lambda: self.conn.target, config.poll.timeout, watchdog,
                                   self.stats, wall_clock, self._observe)
        self.last_command = 0.0
        self.credentials = CredentialRotation(target)
        self.placement = Placement()

    def reconfigure(self, config: Config) -> None:
        """New client_list settings (a reload) for the running poller: its connection, its
        cadence and, unless the group labels changed, its churn counters stay; the next
        CLIENT LIST is grouped the new way (until then its families are not served)."""
        same_labels = config.client_list.group_by == self.config.client_list.group_by
        self.config = config
        self.settings = DigestSettings(config.client_list, self.target.max_clients)
        self.planner.config = config
        aggregate = self.memory.aggregate
        aggregate.rewrite_caches.clear()
        if not same_labels:  # counters and ids keyed by the old labels mean nothing now
            self.memory.aggregate = AggregateState()
        self.memory.forget_list()
        self.planner.last_list = None

    # -- poll --------------------------------------------------------------------------
    def poll(self) -> bool:
        """Run one poll; return True when INFO succeeded (redis_up 1)."""
        started = self._clock()
        self.credentials.apply(self.conn)
        planned: list[FirstRound] = []

        def commands(fresh: bool) -> list[steps.Command]:
            planned.append(self._first_round(fresh, started))
            return planned[-1].round.commands()

        try:
            replies = self.conn.execute(commands)
        except HandshakeRefused as refused:
            if refused.command == "SETNAME" and self.conn.named and classify(refused) in (
                    Kind.NOPERM, Kind.UNSUPPORTED):
                self.stats.set_capability(Capability.CLIENT_SETNAME, False, str(refused.reply))
                self.conn.drop_name()
                return self.poll()
            return self._fail(started, refused)
        except ReplyCut as cut:  # INFO may have arrived before the connection broke
            return self._digest(started, planned[-1], cut.replies, cut.error)
        except Exception as error:
            return self._fail(started, error)
        return self._digest(started, planned[-1], replies, None)

    def _first_round(self, fresh: bool, now: float) -> FirstRound:
        decision = self._list_decision(now)
        return self.planner.first_round(fresh, now, self.memory.facts, decision.due,
                                        self.stats.capabilities)

    def _list_decision(self, now: float) -> ListDecision:
        decision = self.planner.client_list(now, self.memory.facts,
                                            self.memory.bytes_per_client,
                                            self.stats.capabilities)
        self.stats.client_list_interval = decision.interval
        if decision.fits is not None:
            self.stats.set_capability(Capability.CLIENT_LIST_FITS, decision.fits,
                                      "reply would exceed client-output-buffer-limit normal")
            if not decision.fits:  # its families go, rather than freeze at the last that fit
                self.memory.forget_list()
        return decision

    def _digest(self, started: float, first: FirstRound, replies: Sequence[Timed],
                cut: BaseException | None) -> bool:
        digest = PollDigest(self.memory, self.settings, self._wall())
        arrived = {step.name: timed for step, timed in first.round.split(replies)}
        for step in first.round.steps:  # a cut round: the steps whose replies all arrived
            if step.name in arrived:
                digest.take(step, [reply for reply, _ in arrived[step.name]])
        self._apply(digest.findings, started)
        if steps.INFO not in arrived:  # the poll counts once INFO arrived (redis_up 1)
            assert cut is not None
            return self._fail(started, cut)
        if digest.info_error is not None:
            if self.memory.facts.version is not None and \
                    classify(digest.info_error) == Kind.UNSUPPORTED:
                self.memory.facts.version = None  # an older server behind the address
            return self._fail(started, digest.info_error)
        info_done = arrived[steps.INFO][0][1]
        self.last_command = self._clock()
        if self.conn.named:  # else the target showed no client_setname capability at all
            self.stats.set_capability(Capability.CLIENT_SETNAME, True)
        facts = self.memory.facts
        if facts.run_id and digest.info and "tcp_port" in digest.info:
            self.store.claim_identity(self.target.name, facts.run_id, digest.info["tcp_port"])
        self._finish_step(Step.INFO, info_done - started)
        self._client_list(digest, first, steps.CLIENT_LIST in arrived, cut, info_done)
        view = digest.view()
        self.stats.record_up()
        self._redis_text = _encode(render_redis(self.target.name, view))
        self.publish()
        return True

    def _client_list(self, digest: PollDigest, first: FirstRound, listed: bool,
                     cut: BaseException | None, info_done: float) -> None:
        """After a good INFO: CLIENT LIST's outcome (it arrived, was cut, or comes in a
        second round trip now). A cut costs CLIENT LIST only; redis_up stays 1."""
        list_error = None
        if cut is not None and (listed or steps.CLIENT_LIST not in first.round.names()):
            self.stats.count_error(Step.INFO, self._kind(cut))  # cut after INFO, not the list
        elif cut is not None:
            list_error = cut
        elif first.deferred and self._list_decision(info_done).due:
            list_error, listed = self._list_again(digest), True
        if list_error is not None:
            self.stats.count_error(Step.CLIENT_LIST, self._kind(list_error))
            self.memory.forget_list()
        elif listed:
            self._listed(digest, info_done)

    def _list_again(self, digest: PollDigest) -> BaseException | None:
        """CLIENT LIST in a second round trip, when this poll's facts say its reply fits;
        INFO again in front of it, so that the two are one snapshot (churn counts ids
        against INFO's totals of the same moment)."""
        again = steps.Round((steps.info_step(self.memory.facts.modern()),
                             steps.client_list_step(self.target.commands.client)))
        try:
            replies = self.conn.execute(again.commands())
        except ReplyCut as cut:
            return cut.error
        except Exception as error:
            return error
        for step, timed in again.split(replies):
            digest.take(step, [reply for reply, _ in timed])
        return None

    def _listed(self, digest: PollDigest, info_done: float) -> None:
        self.planner.last_list = info_done
        self._apply(digest.findings, info_done)
        listed = digest.listed
        if listed is None:  # refused
            return
        if listed.malformed:
            log.warning("CLIENT LIST had lines that are not clients %s",
                        kv(target=self.target.name, lines=listed.malformed))
        self.stats.client_list_bytes = listed.reply_bytes
        self._finish_step(Step.CLIENT_LIST, self._clock() - info_done)

    def _apply(self, findings: list[Finding], now: float) -> None:
        """Record what the replies showed of each capability (each finding once)."""
        while findings:
            finding = findings.pop(0)
            if not finding.applies:
                self.stats.drop_capability(finding.capability)
                continue
            if finding.refusal is None:
                self.stats.set_capability(finding.capability, True)
                continue
            changed = self.stats.set_capability(finding.capability, False,
                                                str(finding.refusal))
            if finding.step is None:  # noted, neither an error nor retried
                continue
            if changed:
                self.stats.count_error(finding.step, classify(finding.refusal))
            self.planner.refused(finding.capability, now)

    def _kind(self, error: BaseException) -> str:
        """classify(), plus what only this target knows: Redis at maxclients closes a TLS
        connection before the handshake, so an EOF or reset there is maxclients when the
        last INFO showed no headroom, and a TLS problem otherwise."""
        if self.target.endpoint.scheme == "rediss" and is_tls_eof(error):
            return Kind.MAXCLIENTS if self.memory.facts.full() else Kind.TLS
        return classify(error)

    def _fail(self, started: float, error: BaseException) -> bool:
        kind = self._kind(error)
        self.stats.count_error(Step.INFO, kind)
        self.stats.finish_step(Step.INFO, self._clock() - started, None)
        self.stats.record_down(kind, self._message(error))
        self._redis_text = _encode(render_redis(self.target.name, None))
        self.memory.forget_list()
        self.planner.last_list = None
        self.publish()
        return False

    def _finish_step(self, step: str, seconds: float) -> None:
        self.stats.finish_step(step, seconds, self._wall())
        self._observe(step, seconds)

    # -- scheduling hints --------------------------------------------------------------
    def keepalive_interval(self) -> float | None:
        return self.memory.facts.keepalive_interval(self.config.poll.interval)

    def keepalive(self) -> None:
        """PING the held connection; never reconnects (that is the next poll's job, with its
        backoff: a reconnect at maxclients would add a rejected connection)."""
        if not self.conn.is_connected():
            return
        try:
            self.conn.execute([("PING",)])
            self.last_command = self._clock()
        except Exception as error:
            log.debug("keepalive failed %s", kv(target=self.target.name, err=error))

    def failure_kind(self) -> str | None:
        """The kind of the current failure of INFO; None while the target is up."""
        return self.stats.kind

    # -- probe -------------------------------------------------------------------------
    @property
    def probe_settings(self) -> ProbeConfig:
        return self.target.connect_probe

    def probe(self) -> bool:
        """Run the connect probe (or infer its answer while Redis is full) and publish;
        True when a new connection got in."""
        self._probe.run(self.conn.named, bool(self.stats.up) and self.memory.facts.full(),
                        self._kind, self._message)
        self.publish()
        return self.stats.probe_success == 1

    # -- publish -----------------------------------------------------------------------
    def publish(self) -> None:
        """Render and swap in a snapshot. Poll and probe workers both publish: the lock makes
        the last snapshot put the one built from the latest state."""
        stats = self.stats
        with stats.lock:
            self_text = render_self(self.target.name, self._self_view())
            self.store.put(Snapshot(
                target=self.target.name,
                families={**self._redis_text, **self_text},
                up=bool(stats.up),
                polled=stats.up is not None,
                last_poll_wall=stats.last_success.get(Step.INFO),
                error_kind=stats.kind,
                probe="" if stats.probe_success is None else (stats.probe_kind or "ok"),
            ), owner=self)

    def _self_view(self) -> SelfView:
        in_use, idle = self.conn.pool_counts()
        stats = self.stats
        return SelfView(
            pool_in_use=in_use, pool_idle=idle, pool_max=1,
            connections_created=self.conn.connections_created,
            last_duration=dict(stats.last_duration), errors=dict(stats.errors),
            last_success=dict(stats.last_success), probe_success=stats.probe_success,
            probe_duration=stats.probe_duration, client_list_bytes=stats.client_list_bytes,
            client_list_interval=stats.client_list_interval,
            capabilities=dict(stats.capabilities),
            source=self.target.source, address=self.target.endpoint.address,
            parent=self.target.parent,
            node_id=self.memory.facts.node_id or self.placement.node_id,
            shard=self.memory.facts.shard_id, health=self.placement.health,
        )

    def _message(self, error: BaseException) -> str:
        text = f"{type(error).__name__}: {error}{out_of_files_hint(error)}"
        return self.target.password.scrub(text) if self.target.password else text

    def close(self) -> None:
        self.conn.close()


def _encode(families: dict[str, str]) -> dict[str, bytes]:
    return {name: text.encode("utf-8") for name, text in families.items()}
