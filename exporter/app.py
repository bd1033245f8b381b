"""Wires the pieces together: targets -> pollers -> scheduler -> snapshots -> HTTP."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass

from exporter import clientlist
from exporter.config import Config
from exporter.exposition import Exposition
from exporter.logsetup import kv
from exporter.poller import TargetPoller
from exporter.scheduler import Scheduler
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import SnapshotStore
from exporter.watchdog import Watchdog
from exporter.web import ExporterHTTPServer, serve_in_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebSettings:
    listen_address: str = ":9379"
    telemetry_path: str = "/metrics"


def parse_listen_address(address: str) -> tuple[str, int]:
    """`:9379`, `127.0.0.1:9379` or `[::1]:9379` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if (not sep or not port.isdigit() or not 0 <= int(port) <= 65535
            or (":" in host and not bracketed)):
        raise ValueError(f"--web.listen-address: not host:port or [v6]:port: {address!r}")
    return host[1:-1] if bracketed else host, int(port)


class _IPv6Server(ExporterHTTPServer):
    address_family = socket.AF_INET6


class Exporter:
    """One running exporter; `start` binds and polls, `stop` closes everything."""

    def __init__(self, config: Config, web: WebSettings) -> None:
        self.config = config
        self.web = web
        self.store = SnapshotStore()
        self.self_metrics = SelfMetrics()
        self.watchdog = Watchdog()
        self.store.set_targets(tuple(target.name for target in config.targets))
        self.pollers = [TargetPoller(target, config, self.watchdog, self.store,
                                     observe=self.self_metrics.observe)
                        for target in config.targets]
        for poller in self.pollers:
            poller.publish()
        self.scheduler = Scheduler(self.pollers, config.poll, self.watchdog)
        self.exposition = Exposition(self.store, self.self_metrics)
        self.server: ExporterHTTPServer | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        host, port = parse_listen_address(self.web.listen_address)
        server_class = _IPv6Server if ":" in host else ExporterHTTPServer
        self.server = server_class((host, port), self.exposition, self.store,
                                   self.web.telemetry_path, self._ready.is_set)
        serve_in_thread(self.server)
        self.scheduler.start()
        self._ready.set()
        log.info("listening %s", kv(
            address=self.bound_address(), targets=len(self.config.targets),
            scanner="compiled" if clientlist.compiled_scanner_available() else "pure"))

    def bound_address(self) -> str:
        if self.server is None:
            return ""
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def stop(self) -> None:
        self._ready.clear()
        if self.server is not None:
            self.server.shutdown()
        self.scheduler.stop()
        self.watchdog.stop()
        if self.server is not None:
            self.server.server_close()
        log.info("stopped")
