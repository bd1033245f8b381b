"""One target's poll step: fetch -> parse -> aggregate -> render -> publish a snapshot."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.config.model import Config, TargetConfig
from exporter.conn import connection as redis_connection
from exporter.conn.errors import (
    ErrorReply,
    HandshakeRefused,
    ReplyCut,
    classify,
    classify_reply,
    is_tls_eof,
    reply_text,
)
from exporter.conn.watchdog import Watchdog
from exporter.expose.render import RedisView, SelfView, render_redis, render_self
from exporter.expose.snapshot import Snapshot, SnapshotStore
from exporter.logsetup import kv
from exporter.pipeline.aggregate import aggregate_client_list, client_list_spec
from exporter.pipeline.info import (
    connections_in_use,
    effective_max_clients,
    parse_info,
)
from exporter.poll.credentials import CredentialRotation
from exporter.poll.probe import ConnectProbe
from exporter.poll.state import ClientListState, ServerFacts
from exporter.poll.stats import TargetStats

log = logging.getLogger(__name__)

INFO_SECTIONS = ("INFO", "server", "clients", "memory", "stats", "replication")
CONFIG_KEYS = ("maxclients", "timeout", "client-output-buffer-limit")
CAPABILITY_RETRY_SECONDS = 300.0


@dataclass
class _PollPlan:
    """What one poll sent, decided when the connection was known (fresh or held)."""

    deferred: bool = False  # CLIENT LIST in a second round trip, after INFO
    with_config: bool = False
    no_evict: bool = False


class TargetPoller:
    """Owns one target: its poll connection, its bookkeeping and its published snapshot."""

    def __init__(self, target: TargetConfig, config: Config, watchdog: Watchdog,
                 store: SnapshotStore, wall_clock: Callable[[], float] = time.time,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.target = target
        self.config = config
        self.store = store
        self._wall = wall_clock
        self._observe = observe or (lambda step, seconds: None)
        self.conn = redis_connection.PollConnection(target, config.poll.timeout, watchdog)
        self.stats = TargetStats(target.name, config.poll.client_list_interval)
        self.facts = ServerFacts()
        self.listing = ClientListState()
        self._spec = client_list_spec(config.client_list)
        self._redis_text: dict[str, str] = {}  # nothing about Redis until the first poll
        self._probe = ConnectProbe(lambda: self.conn.target, config.poll.timeout, watchdog,
                                   self.stats, wall_clock, self._observe)
        self.last_command = 0.0
        self.credentials = CredentialRotation(target)

    # -- poll --------------------------------------------------------------------------
    def poll(self) -> bool:
        """Run one poll step; return True when INFO succeeded (redis_up 1)."""
        started = time.monotonic()
        plan = _PollPlan()
        self.credentials.apply(self.conn)

        def commands(fresh: bool) -> list[redis_connection.Command]:
            return self._plan(plan, fresh, started)

        try:
            replies = self.conn.execute(commands)
        except HandshakeRefused as refused:
            if refused.command == "SETNAME" and self.conn.named and classify(refused) in (
                    "noperm", "unsupported"):
                self.stats.set_capability("client_setname", False, str(refused.reply))
                self.conn.drop_name()
                return self.poll()
            return self._fail(started, refused)
        except ReplyCut as cut:  # INFO may have arrived before the connection broke
            replies = self._arrange(plan, cut.replies)
            if len(replies) < 1 + len(CONFIG_KEYS):
                return self._fail(started, cut.error)
            self.last_command = time.monotonic()
            return self._digest(started, replies, False, list_error=cut.error)
        except Exception as error:
            return self._fail(started, error)
        self.last_command = time.monotonic()
        return self._digest(started, self._arrange(plan, replies), plan.deferred)

    def _plan(self, plan: _PollPlan, fresh: bool, started: float
              ) -> list[redis_connection.Command]:
        """The pipeline, decided once the connection exists (fresh: just opened)."""
        if fresh:
            self.facts.config_loaded = False
        with_list = self._client_list_due(started)
        # CLIENT LIST waits for this poll's INFO and CONFIG when a reply too large for the
        # normal-class output-buffer limit could get us disconnected: on a new connection
        # (limit unknown) or when a limit is set. Otherwise it shares INFO's round trip.
        plan.deferred = with_list and (fresh or self.facts.obuf_hard_limit > 0)
        plan.with_config = fresh or self._config_due(started, with_list)
        plan.no_evict = fresh and self.stats.capabilities.get("client_no_evict") != 0 and (
            self.facts.version is None or self.facts.modern())
        commands: list[redis_connection.Command] = []
        if plan.no_evict:
            commands.append((self.target.commands.client, "NO-EVICT", "on"))
        commands.append(INFO_SECTIONS if self.facts.modern() else ("INFO",))
        if plan.with_config:
            commands.extend((self.target.commands.config, "GET", key) for key in CONFIG_KEYS)
        if with_list and not plan.deferred:
            commands.append(self._client_list_command())
        return commands

    def _arrange(self, plan: _PollPlan, replies: list[tuple[redis_connection.Reply, float]]
                 ) -> list[tuple[redis_connection.Reply, float]]:
        """[INFO, CONFIG GET x3 (None when not sent), CLIENT LIST (when read)] with times."""
        replies = list(replies)
        if plan.no_evict and replies:
            self._note_no_evict(replies.pop(0)[0])
        if not plan.with_config and replies:
            return [replies[0], *[(None, 0.0)] * len(CONFIG_KEYS), *replies[1:]]
        return replies

    def _client_list_command(self) -> redis_connection.Command:
        return (self.target.commands.client, "LIST")

    def _note_no_evict(self, reply: redis_connection.Reply) -> None:
        allowed = not isinstance(reply, ErrorReply)
        self.stats.set_capability("client_no_evict", allowed, str(reply) if not allowed else "")

    def _digest(self, started: float, replies: list[tuple[redis_connection.Reply, float]],
                deferred: bool, list_error: BaseException | None = None) -> bool:
        info_reply, info_done = replies[0]
        if isinstance(info_reply, ErrorReply):
            if self.facts.version is not None and classify_reply(reply_text(info_reply)) == \
                    "unsupported":
                self.facts.version = None  # older server behind the same address: plain INFO
            return self._fail(started, info_reply)
        if self.conn.named:  # else the target showed no client_setname capability at all
            self.stats.set_capability("client_setname", True)
        info = parse_info(info_reply)
        self._learn_from_info(info)
        self._apply_config(replies[1:1 + len(CONFIG_KEYS)])
        now_wall = self._wall()
        self._finish_step("info", info_done - started, now_wall)
        listed = replies[1 + len(CONFIG_KEYS):]
        if not listed and deferred and self._client_list_due(info_done):
            try:  # the facts of this very poll say the reply fits
                listed = self.conn.execute([self._client_list_command()])
            except Exception as error:
                list_error = error
        if list_error is not None:  # INFO did succeed: redis_up stays 1 for this poll
            self.stats.count_error("client_list", self._kind(list_error))
            self.listing.forget()
        elif listed:
            self._digest_client_list(listed[0][0], info_done)
        view = self._view(info)
        self.stats.record_up()
        self._redis_text = render_redis(self.target.name, view)
        self.publish()
        return True

    def _learn_from_info(self, info: dict[str, str]) -> None:
        self.facts.learn_info(info, self._wall())
        if self.facts.run_id and "tcp_port" in info:
            self.store.claim_identity(self.target.name, self.facts.run_id, info["tcp_port"])

    def _apply_config(self, replies: list[tuple[redis_connection.Reply, float]]) -> None:
        if replies[0][0] is None:
            return
        values: dict[str, str] = {}
        for key, (reply, _) in zip(CONFIG_KEYS, replies):
            if isinstance(reply, ErrorReply):
                self._deny("config", "info", reply)
                return
            if isinstance(reply, list) and len(reply) >= 2:
                values[key] = _text(reply[1])
        self.stats.set_capability("config", True)
        self.facts.learn_config(values)

    def _deny(self, capability: str, step: str, reply: ErrorReply) -> None:
        if self.stats.set_capability(capability, False, str(reply)):
            self.stats.count_error(step, classify_reply(reply_text(reply)))
        self.listing.retry_at[capability] = time.monotonic() + CAPABILITY_RETRY_SECONDS

    def _digest_client_list(self, reply: redis_connection.Reply, info_done: float) -> None:
        listing = self.listing
        listing.last_run = info_done
        if isinstance(reply, ErrorReply):
            self._deny("client_list", "client_list", reply)
            listing.forget()
            return
        result = aggregate_client_list(reply, self.config.client_list, listing.state, self._spec)
        if result.malformed:
            log.warning("CLIENT LIST had lines that are not clients %s",
                        kv(target=self.target.name, lines=result.malformed))
        listing.groups, listing.histograms = result.groups, result.histograms
        listing.bytes_per_client = result.reply_bytes / max(result.clients, 1)
        self.stats.client_list_bytes = result.reply_bytes
        self.stats.set_capability("client_list", True)
        self._finish_step("client_list", time.monotonic() - info_done, self._wall())

    def _view(self, info: dict[str, str]) -> RedisView:
        max_clients = effective_max_clients(self.target.max_clients, info,
                                            self.facts.config_max_clients)
        used = connections_in_use(info)
        self.facts.headroom = (max_clients - used if max_clients is not None
                               and used is not None else None)
        return RedisView(info=info, max_clients=max_clients, start_time=self.facts.start_time,
                         groups=self.listing.groups, group_by=self.config.client_list.group_by,
                         histograms=self.listing.histograms)

    def _kind(self, error: BaseException) -> str:
        """classify(), plus what only this target knows: Redis at maxclients closes a TLS
        connection before the handshake, so an EOF or reset there is maxclients when the
        last INFO showed no headroom, and a TLS problem otherwise."""
        if self.target.endpoint.scheme == "rediss" and is_tls_eof(error):
            return "maxclients" if self.facts.full() else "tls"
        return classify(error)

    def _fail(self, started: float, error: BaseException) -> bool:
        kind = self._kind(error)
        self.stats.count_error("info", kind)
        self.stats.finish_step("info", time.monotonic() - started, None)
        self.stats.record_down(kind, self._message(error))
        self._redis_text = render_redis(self.target.name, None)
        self.listing.forget()
        self.listing.last_run = None
        self.publish()
        return False

    def _finish_step(self, step: str, seconds: float, now_wall: float) -> None:
        self.stats.finish_step(step, seconds, now_wall)
        self._observe(step, seconds)

    # -- scheduling hints --------------------------------------------------------------
    def client_list_interval(self) -> float:
        return self.listing.interval(self.config, self.facts)

    def _client_list_due(self, now: float) -> bool:
        listing = self.listing
        if self.stats.capabilities.get("client_list") == 0 and \
                now < listing.retry_at.get("client_list", 0.0):
            return False
        interval = self.client_list_interval()
        self.stats.client_list_interval = interval
        if listing.waiting(now, interval, self.config.poll.interval):
            return False
        fits = listing.fits_output_buffer(self.facts)
        self.stats.set_capability("client_list_fits_output_buffer", fits,
                                  "reply would exceed client-output-buffer-limit normal")
        if not fits:  # its families go, rather than freeze at the last list that fitted
            listing.forget()
        return fits

    def _config_due(self, now: float, with_list: bool) -> bool:
        if self.stats.capabilities.get("config") == 0:
            return now >= self.listing.retry_at.get("config", 0.0)
        return with_list or not self.facts.config_loaded

    def keepalive_interval(self) -> float | None:
        return self.facts.keepalive_interval(self.config.poll.interval)

    def keepalive(self) -> None:
        """PING the held connection; never reconnects (that is the next poll's job, with its
        backoff: a reconnect at maxclients would add a rejected connection)."""
        if not self.conn.is_connected():
            return
        try:
            self.conn.execute([("PING",)])
            self.last_command = time.monotonic()
        except Exception as error:
            log.debug("keepalive failed %s", kv(target=self.target.name, err=error))

    # -- probe -------------------------------------------------------------------------
    def probe(self) -> None:
        """Run the connect probe (or infer its answer while Redis is full) and publish."""
        self._probe.run(self.conn.named, bool(self.stats.up) and self.facts.full(), self._kind,
                        self._message)
        self.publish()

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
                last_poll_wall=stats.last_success.get("info"),
                error_kind=stats.kind,
                probe="" if stats.probe_success is None else (stats.probe_kind or "ok"),
            ))

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
        )

    def _message(self, error: BaseException) -> str:
        text = f"{type(error).__name__}: {error}"
        return self.target.password.scrub(text) if self.target.password else text

    def close(self) -> None:
        self.conn.close()


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
