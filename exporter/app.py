"""Wires the pieces together: targets -> pollers -> scheduler -> snapshots -> HTTP."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.config.loader import ConfigError
from exporter.config.model import Config, SourceEntry, TargetConfig
from exporter.config.web import WebConfig, load_web_config
from exporter.conn.watchdog import Watchdog
from exporter.expose.exposition import Exposition
from exporter.expose.selfmetrics import SelfMetrics
from exporter.expose.snapshot import SnapshotStore
from exporter.expose.web import ExporterHTTPServer, serve_in_thread
from exporter.expose.web_reload import WebConfigReloader, WebSecurity, security_of
from exporter.logsetup import kv
from exporter.pipeline import clientlist
from exporter.poll.poller import Placement, TargetPoller
from exporter.poll.scheduler import Scheduler
from exporter.sharding import Roster, Shard
from exporter.sources.asking import FoundNode
from exporter.sources.changes import TargetChanges, keep_rotated_password, target_changes
from exporter.sources.cluster import ClusterDiscovery
from exporter.sources.dynamic import DynamicTargets, Refused
from exporter.sources.runner import SourceRunner
from exporter.sources.sentinel import SentinelDiscovery
from exporter.sources.static import static_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebSettings:
    listen_address: str = ":9379"
    telemetry_path: str = "/metrics"
    enable_lifecycle: bool = False  # POST /-/reload, as Prometheus' --web.enable-lifecycle
    config_file: str | None = None  # --web.config.file: TLS and basic auth (exporter-toolkit)


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9379`, `127.0.0.1:9379` or `[::1]:9379` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if (not sep or not port.isdigit() or not 0 <= int(port) <= 65535
            or (":" in host and not bracketed)):
        raise ValueError(f"--web.listen-address: not host:port or [v6]:port: {address!r}")
    return host[1:-1] if bracketed else host, int(port)


class Exporter:
    """One running exporter; `start` binds and polls, `stop` closes everything."""

    def __init__(self, config: Config, web: WebSettings,
                 loader: Callable[[], Config] | None = None,
                 web_config: WebConfig | None = None, shard: Shard | None = None) -> None:
        self.config = config
        # Every replica reads the same configuration and polls only its own shard of it; the
        # rest stays known (roster) so / and /scrape can say which replica owns a target.
        self.shard = shard or Shard()
        # Cluster and Sentinel entries: their runners, and the targets each found (all
        # shards: the roster knows them; `members`: the ones this replica polls).
        self.runners: dict[str, SourceRunner] = {}
        self._found: dict[str, tuple[str, ...]] = {}
        self._members: dict[str, set[str]] = {}
        self.roster = self._new_roster(config)
        self.web = web
        # The CLI parses the file first (a bad one exits 2); in-process users may leave it to us.
        if web_config is None and web.config_file:
            web_config = load_web_config(web.config_file)
        self.web_config = web_config
        self.loader = loader  # re-reads the configuration on reload; None: nothing to re-read
        self.store = SnapshotStore()
        self.self_metrics = SelfMetrics()
        self.watchdog = Watchdog()
        self.scheduler = Scheduler(config.poll, self.watchdog)
        self.pollers: dict[str, TargetPoller] = {}
        self.dynamic = DynamicTargets(config.dynamic, config.auth_modules, time.monotonic)
        # One lock for every change of `pollers` and of the discovered targets: a reload, a
        # registration, a re-check and expiry never interleave.
        self._targets_lock = threading.RLock()
        self._stopping = threading.Event()
        self._apply_changes(target_changes({}, static_targets(config, self.shard)), config)
        self.exposition = Exposition(self.store, self.self_metrics)
        self.server: ExporterHTTPServer | None = None
        self.web_reloader: WebConfigReloader | None = None
        self._ready = threading.Event()
        self._reload_lock = threading.Lock()

    def _start(self, target: TargetConfig, config: Config, at_once: bool = False) -> None:
        poller = TargetPoller(target, config, self.watchdog, self.store,
                              observe=self.self_metrics.observe)
        self.store.add(target.name, poller)
        poller.publish()
        self.scheduler.add(poller, at_once=at_once)
        self.pollers[target.name] = poller

    def _stop(self, name: str) -> None:
        poller = self.pollers.pop(name)
        self.store.remove(name, poller)
        self.scheduler.remove(poller)  # its connection closes when no worker holds it
        self.dynamic.first_poll_done(name)  # a discovered target's pending slot, if any

    def _apply_changes(self, changes: TargetChanges, config: Config) -> None:
        for name in changes.removed:
            self._stop(name)
        for target in changes.replaced:
            self._stop(target.name)
            self._start(target, config)
        for target in changes.rotated:  # only the password: AUTH in place
            password = target.password
            assert password is not None
            self.pollers[target.name].credentials.offer(password)
        for target in changes.added:
            self._start(target, config)

    def reload(self) -> list[str]:
        """Re-read the configuration and apply it; the problems, if it was rejected.

        A bad configuration is rejected as a whole: the running one stays, every problem is
        logged with its key path, and config_last_reload_successful goes to 0.
        """
        web_problems = self.web_reloader.reload() if self.web_reloader else []
        if self.loader is None:
            self.store.touch()
            return web_problems
        with self._reload_lock, self._targets_lock:
            try:
                config = self.loader()
            except ConfigError as error:
                for problem in error.problems:
                    log.error("reload rejected %s", kv(problem=problem))
                self.self_metrics.reload_ok.set(0)
                self.store.touch()
                return list(error.problems) + web_problems
            self._apply(config)
            self.self_metrics.reload_ok.set(1)
            self.store.touch()
            return web_problems

    def _apply(self, new: Config) -> None:
        """Apply `new` as changes: unchanged targets keep their poller, connection and
        cadence; removed ones close and their series go; added and changed ones start. A
        change of `client_list` is applied to the running pollers (their connections and
        churn counters stay); a change of `poll` restarts every target."""
        poll_changed = new.poll != self.config.poll
        owned = static_targets(new, self.shard)
        # The connection's target holds the credentials in use (rotation updates it).
        # Discovered targets are not in the file: a reload keeps them (a change of `poll`
        # restarts them below, as every target).
        discovered = set(self.dynamic.names())
        for target in owned:  # a configured name is never a discovered target's
            if target.name in discovered:
                self._drop_discovered(target.name)
                discovered.discard(target.name)
        nodes = set().union(*self._members.values())
        held = {name: poller.conn.target for name, poller in self.pollers.items()
                if name not in discovered and name not in nodes}
        changes = target_changes(held, owned, restart_all=poll_changed)
        if poll_changed:
            self.scheduler.reconfigure(new.poll)
        elif new.client_list != self.config.client_list:
            for poller in self.pollers.values():
                poller.reconfigure(new)
        self._apply_changes(changes, new)
        self._reapply_discovered(new, poll_changed)
        if self.server is not None:
            self.server.first_poll_wait = new.poll.timeout
        self.store.order(tuple(target.name for target in owned))
        self.config = new
        self._reapply_sources(new, poll_changed)
        self.roster = self._new_roster(new)
        log.info("reloaded %s", kv(targets=len(self.pollers), configured=len(new.targets),
                                   added=len(changes.added), removed=len(changes.removed),
                                   replaced=len(changes.replaced),
                                   rotated=len(changes.rotated)))

    # -- cluster and Sentinel entries -------------------------------------------------------

    def _new_roster(self, config: Config) -> Roster:
        found = [name for names in self._found.values() for name in names]
        return Roster((*(target.name for target in config.targets), *found), self.shard)

    def _runner(self, entry: SourceEntry, config: Config) -> SourceRunner:
        def error(kind: str) -> None:
            self.self_metrics.discovery_errors.labels(entry.name, kind).inc()
            self.store.touch()

        def failover(parent: str, count: int) -> None:
            # count 0: a parent first seen, its series at 0 so increase() sees the first one
            self.self_metrics.failovers.labels(parent).inc(count)
            self.store.touch()

        timeout = config.poll.timeout
        if entry.cluster is not None:
            discovery: ClusterDiscovery | SentinelDiscovery = ClusterDiscovery(
                entry, timeout, self.watchdog, error, failover)
            interval, listen = entry.cluster.refresh, None
            failover(entry.name, 0)
        else:
            assert entry.sentinel is not None
            sentinel = SentinelDiscovery(entry, timeout, self.watchdog, error, failover)
            discovery, interval = sentinel, entry.sentinel.refresh
            listen = lambda: sentinel.current  # noqa: E731
        return SourceRunner(entry.name, discovery, interval,
                            lambda found: self._apply_found(entry.name, found), self._down,
                            listen, timeout)

    def _apply_found(self, entry: str, found: list[FoundNode]) -> set[str]:
        """A topology read of `entry`: its targets in this shard start, stop or stay (their
        connections and cadence kept), and each gets the topology's view of it."""
        with self._targets_lock:
            if entry not in self.runners or self._stopping.is_set():
                return set()
            self._found[entry] = tuple(node.target.name for node in found)
            taken = {name for other, names in self._members.items() if other != entry
                     for name in names} | {target.name for target in self.config.targets}
            wanted: dict[str, FoundNode] = {}
            for node in found:
                name = node.target.name
                if name in taken or name in self.dynamic.names():
                    log.warning("found target already polled %s", kv(target=name,
                                                                     parent=entry))
                elif self.shard.owns(name):
                    wanted[name] = node
            members = self._members.get(entry, set())
            held = {name: self.pollers[name].conn.target for name in members
                    if name in self.pollers}
            # A node's password rotates through its own password_file watch; a topology
            # read never hands it back the password read at start-up.
            targets = [keep_rotated_password(node.target, held.get(name))
                       for name, node in wanted.items()]
            changes = target_changes(held, targets)
            self._apply_changes(changes, self.config)
            for name, node in wanted.items():
                poller = self.pollers[name]
                placement = Placement(node.node_id, node.health)
                if poller.placement != placement:
                    poller.placement = placement
                    poller.publish()
            self._members[entry] = set(wanted)
            self.roster = self._new_roster(self.config)
            if changes.added or changes.removed:
                log.info("topology changed %s", kv(parent=entry, targets=len(wanted),
                                                   added=len(changes.added),
                                                   removed=len(changes.removed)))
            return set(wanted)

    def _start_sources(self, entries: tuple[SourceEntry, ...], config: Config) -> None:
        for entry in entries:
            runner = self._runner(entry, config)
            self.runners[entry.name] = runner
            runner.start()

    def _stop_source(self, name: str, keep_targets: bool = False) -> None:
        self.runners.pop(name).stop()
        if not keep_targets:
            for target in self._members.pop(name, set()):
                if target in self.pollers:
                    self._stop(target)
            self._found.pop(name, None)

    def _reapply_sources(self, new: Config, poll_changed: bool) -> None:
        """Entries removed stop with their targets; changed ones get a new runner whose first
        read keeps every node that did not change (its poller and connection stay)."""
        if not self._ready.is_set():
            return  # not started: start() starts the entries of the configuration it has
        wanted = {entry.name: entry for entry in new.sources}
        running = {name: runner for name, runner in self.runners.items()}
        for name in running:
            if name not in wanted:
                self._stop_source(name)
        for name, entry in wanted.items():
            runner = self.runners.get(name)
            if runner is not None and not poll_changed and \
                    getattr(runner.discovery, "entry", None) == entry:
                continue
            if runner is not None:
                self._stop_source(name, keep_targets=not poll_changed)
            self._start_sources((entry,), new)

    # -- targets Prometheus discovers (dynamic_targets) ------------------------------------

    def _reapply_discovered(self, new: Config, poll_changed: bool) -> None:
        """Discovered targets against a reloaded `allow` and modules: trust taken back is
        taken back now, and changed module settings (credentials, TLS) restart them."""
        self.dynamic.config, self.dynamic.modules = new.dynamic, dict(new.auth_modules)
        dropped, renewed = self.dynamic.revalidate()
        for name in dropped:
            if name in self.pollers:
                self._stop(name)
        restart = {registered.target.name: registered.target for registered in renewed}
        if poll_changed:
            for name in self.dynamic.names():
                registered = self.dynamic.get(name)
                if registered is not None:
                    restart.setdefault(name, registered.target)
        for name, target in restart.items():
            if name in self.pollers:
                self._stop(name)
            self._start(target, new, at_once=True)

    def discover(self, text: str, module: str | None) -> str | tuple[int, str] | None:
        """/scrape of a target not in the file: its name once registered (its first poll
        started at once), (status, fixed text) when refused (counted by reason), or None
        without `dynamic_targets` (then /scrape answers 404 as for any unknown target)."""
        if not self.dynamic.enabled:
            return None
        try:
            registered, new = self.dynamic.admit(text, module, self._configured)
            name = registered.target.name
            if new:
                self._register(registered.target)
            elif self._down(name):
                # Its host may resolve elsewhere now: checked again, like a first time.
                with self._targets_lock:
                    renewed = self.dynamic.recheck(name)
                    if renewed is not None:
                        if name in self.pollers:
                            self._stop(name)
                        self._start(renewed.target, self.config, at_once=True)
        except Refused as refused:
            return self._refuse(refused)
        return name

    def _configured(self, name: str) -> bool:
        return name in self.roster.known or (
            name in self.pollers and self.dynamic.get(name) is None)

    def _register(self, target: TargetConfig) -> None:
        name = target.name
        with self._targets_lock:
            if self.dynamic.get(name) is None or name in self.pollers:
                return  # expired or replaced meanwhile, or started by a concurrent scrape
            try:
                self._start(target, self.config, at_once=True)
            except Exception:  # nothing of it may stay registered without a poller
                self.dynamic.forget(name)
                raise
        self.store.when_polled(name).add_done_callback(
            lambda _: self.dynamic.first_poll_done(name))

    def _drop_discovered(self, name: str) -> None:
        self.dynamic.forget(name)
        if name in self.pollers:
            self._stop(name)

    def _refuse(self, refused: Refused) -> tuple[int, str]:
        self.self_metrics.rejections.labels(refused.reason).inc()
        self.store.touch()
        return refused.status, refused.text

    def _source_of(self, name: str) -> str:
        """The landing page's Source column: how the exporter came to poll `name`."""
        last = self.dynamic.last_scrape(name)
        if last is not None:
            return f"discovered, scraped {time.monotonic() - last:.0f}s ago"
        poller = self.pollers.get(name)
        if poller is not None and poller.target.parent:
            return f"{poller.target.source} {poller.target.parent}"
        return "configured"

    def _down(self, name: str) -> bool:
        snapshot = self.store.get(name)
        return snapshot is not None and snapshot.polled and not snapshot.up

    def _expire_dynamic(self) -> None:
        """Stop polling discovered targets that Prometheus stopped scraping."""
        while not self._stopping.wait(1.0):
            try:
                with self._targets_lock:  # forgotten and stopped in one step
                    expired = self.dynamic.expired()
                    for name in expired:
                        if name in self.pollers:
                            self._stop(name)
                for name in expired:
                    log.info("discovered target expired %s", kv(
                        target=name, expire_after=f"{self.dynamic.config.expire_after:g}s"))
            except Exception:  # the sweep must outlive any surprise
                log.exception("expiring discovered targets failed")

    def start(self) -> None:
        host, port = parse_listen_address(self.web.listen_address)
        # The file the CLI (or the constructor) parsed already: not read a second time.
        security = security_of(self.web_config) if self.web_config else None
        self.server = ExporterHTTPServer(
            (host, port), self.exposition, self.store, self.web.telemetry_path,
            self._ready.is_set, reload=self.reload if self.web.enable_lifecycle else None,
            ssl_context=security.tls if security else None,
            auth=security.auth if security else None,
            roster=lambda: self.roster,
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            discover=self.discover, source_of=self._source_of,
            first_poll_wait=self.config.poll.timeout)
        serve_in_thread(self.server)
        threading.Thread(target=self._expire_dynamic, name="dynamic-expiry",
                         daemon=True).start()
        if security is not None:
            self.web_reloader = WebConfigReloader(security, self._apply_web_security,
                                                  self._web_reloaded)
            self.web_reloader.start()
        tls = security.tls if security else None
        self.scheduler.start()
        self._ready.set()
        with self._targets_lock:
            self._start_sources(self.config.sources, self.config)
        log.info("listening %s", kv(
            address=self.bound_address(), targets=len(self.pollers),
            configured=len(self.config.targets), shard=f"{self.shard.index}/{self.shard.count}",
            tls=tls is not None, basic_auth=self.server.auth is not None,
            scanner="compiled" if clientlist.compiled_scanner_available() else "pure"))

    def _apply_web_security(self, security: WebSecurity) -> None:
        assert self.server is not None
        self.server.set_security(security.tls, security.auth)
        self.web_config = security.config

    def _web_reloaded(self, ok: bool) -> None:
        self.self_metrics.web_reload_ok.set(1 if ok else 0)
        self.store.touch()

    def bound_address(self) -> str:
        if self.server is None:
            return ""
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        self._ready.clear()
        self._stopping.set()
        for runner in self.runners.values():
            runner.stop()
        if self.web_reloader is not None:
            self.web_reloader.stop()
        if self.server is not None:
            self.server.shutdown()
        self.scheduler.stop()
        self.watchdog.stop()
        if self.server is not None:
            self.server.server_close()
        log.info("stopped")

