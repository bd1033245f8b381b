"""HTTP surface: /metrics, /scrape, /, /-/healthy, /-/ready, /-/reload. Keep-alive, TCP_NODELAY,
backlog 256; TLS and basic auth on every path when --web.config.file sets them."""

from __future__ import annotations

import html
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from exporter import __version__
from exporter.expose.basic_auth import BasicAuth
from exporter.expose.exposition import Exposition, TargetExposition
from exporter.expose.snapshot import SnapshotStore
from exporter.logsetup import kv
from exporter.sharding import Roster

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
HANDSHAKE_TIMEOUT = 10.0  # a client that stalls its TLS handshake holds only its own thread


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], exposition: Exposition, store: SnapshotStore,
                 telemetry_path: str, ready: Callable[[], bool],
                 wall_clock: Callable[[], float] = time.time,
                 reload: Callable[[], list[str]] | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 auth: BasicAuth | None = None,
                 roster: Callable[[], Roster] | None = None) -> None:
        self.exposition = exposition
        self.targets = TargetExposition(store)
        # Configured targets and the shard; without one, every target in the store is ours.
        self.roster = roster or (lambda: Roster(tuple(s.target for s in store.read()[1])))
        self.ssl_context = ssl_context  # None: plain HTTP
        self.auth = auth  # None: no basic auth
        self.reload = reload  # None unless --web.enable-lifecycle
        self.store = store
        self.telemetry_path = telemetry_path
        self.ready = ready
        self.wall_clock = wall_clock
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # Only wrapped here; the handshake runs in the request's thread (finish_request), so a
        # slow or silent client never blocks the accept loop.
        sock, address = super().get_request()
        if self.ssl_context is None:
            return sock, address
        try:
            return self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False), address
        except OSError:
            sock.close()
            raise

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(HANDSHAKE_TIMEOUT)
                request.do_handshake()
            except (OSError, ValueError) as error:  # plain HTTP, wrong or no client cert...
                log.debug("tls handshake failed %s", kv(client=client_address[0], err=error))
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: ExporterHTTPServer
    timeout = 60

    def parse_request(self) -> bool:
        """Every path, health and reload included, is behind basic auth when it is set."""
        if not super().parse_request():
            return False
        auth = self.server.auth
        if auth is None or auth.check(self.headers.get("Authorization")):
            return True
        extra = {"WWW-Authenticate": "Basic"}
        if self.command not in ("GET", "HEAD"):  # an unread body would break keep-alive
            self.close_connection = True
            extra["Connection"] = "close"
        self._text(401, "Unauthorized\n", extra)
        return False

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == self.server.telemetry_path:
            self._metrics()
        elif path == "/scrape":
            self._scrape(urlsplit(self.path).query)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", landing_page(self.server).encode())
        elif path in ("/-/healthy", "/health"):
            self._text(200, "Healthy\n")
        elif path == "/-/reload":
            self._text(405, "Only POST or PUT requests allowed\n", {"Allow": "POST, PUT"})
        elif path == "/-/ready":
            if self.server.ready():
                self._text(200, "Ready\n")
            else:
                self._text(503, "Not ready\n")
        else:
            self._text(404, "Not found\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        """Only /-/reload, and only with --web.enable-lifecycle (as in Prometheus)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))  # keep the connection usable
        if urlsplit(self.path).path != "/-/reload":
            self._text(404, "Not found\n")
        elif self.server.reload is None:
            self._text(403, "Lifecycle API is not enabled.\n")
        else:
            problems = self.server.reload()
            if problems:  # key paths and messages only: never a secret
                text = "failed to reload config:\n" + "".join(f"{p}\n" for p in problems)
                self._text(500, text)
            else:
                self._text(200, "")

    def do_PUT(self) -> None:
        self.do_POST()

    def _metrics(self) -> None:
        want_gzip = self._wants_gzip()
        self._send_metrics(self.server.exposition.body(want_gzip), want_gzip)

    def _wants_gzip(self) -> bool:
        return "gzip" in self.headers.get("Accept-Encoding", "")

    def _send_metrics(self, body: bytes, gzipped: bool) -> None:
        self._send(200, CONTENT_TYPE_METRICS, body,
                   {"Content-Encoding": "gzip"} if gzipped else None)

    def _scrape(self, query: str) -> None:
        """One target for the multi-target pattern: the scraper's `instance` names it."""
        names = parse_qs(query, keep_blank_values=True).get("target", [])
        if len(names) != 1 or not names[0]:
            problem = "missing" if not names or not names[0] else "repeated"
            self._text(400, f"'target' parameter is {problem}: use /scrape?target=<name>\n")
            return
        name, roster = names[0], self.server.roster()
        if name not in roster.known:
            self._text(404, f"unknown target {name!r}\n")
            return
        if not roster.shard.owns(name):
            self._text(404, f"target {name!r} is not in this shard: it is in shard "
                       f"{roster.shard.of(name)}, this exporter is "
                       f"{roster.shard.describe()}\n")
            return
        want_gzip = self._wants_gzip()
        body = self.server.targets.body(name, want_gzip)
        if body is None:  # configured a moment ago by a reload, not yet published
            self._text(503, f"target {name!r} has no data yet\n", {"Retry-After": "1"})
            return
        self._send_metrics(body, want_gzip)

    def _text(self, status: int, text: str, extra: dict[str, str] | None = None) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode("utf-8"), extra)

    def _send(self, status: int, content_type: str, body: bytes,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s", format % args)


def landing_page(server: ExporterHTTPServer) -> str:
    now = server.wall_clock()
    _, snapshots = server.store.read()
    rows = []
    for snap in snapshots:
        state = "up" if snap.up else ("down" if snap.polled else "pending")
        age = f"{now - snap.last_poll_wall:.1f}s ago" if snap.last_poll_wall else "never"
        # quote() percent-encodes every character HTML would care about.
        link = f'<a href="/scrape?target={quote(snap.target, safe="")}">scrape</a>'
        rows.append(f"<tr><td>{html.escape(snap.target)}</td><td>{state}</td>"
                    f"<td>{age}</td><td>{html.escape(snap.error_kind or '')}</td>"
                    f"<td>{html.escape(snap.probe)}</td><td>{link}</td></tr>")
    path = html.escape(server.telemetry_path)
    return (
        "<!DOCTYPE html><html><head><title>redis-connection-exporter</title></head><body>"
        f"<h1>redis-connection-exporter</h1><p>Version {__version__}</p>"
        f'<ul><li><a href="{path}">Metrics</a></li><li><a href="/-/healthy">Health</a></li>'
        '<li><a href="/-/ready">Readiness</a></li></ul>'
        "<table><tr><th>Target</th><th>State</th><th>Last successful poll</th>"
        "<th>Error kind</th><th>New connections (probe)</th><th>/scrape</th></tr>"
        f"{''.join(rows)}</table>{_shard_note(server.roster())}</body></html>\n"
    )


def _shard_note(roster: Roster) -> str:
    """With --shard.count > 1: which shard this is, and the targets other replicas poll."""
    shard = roster.shard
    if shard.count == 1:
        return ""
    elsewhere = roster.elsewhere()
    others = ", ".join(f"{html.escape(name)} (shard {shard.of(name)})" for name in elsewhere)
    return (f"<p>This exporter is {shard.describe()} (--shard.index, --shard.count): it polls "
            f"{len(roster.names) - len(elsewhere)} of {len(roster.names)} configured "
            f"targets.</p><p>Not in this shard: {others or 'none'}</p>")


def serve_in_thread(server: ExporterHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="http", daemon=True)
    thread.start()
    return thread
