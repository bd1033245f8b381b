"""HTTP surface: /metrics, /scrape, /, /-/healthy, /-/ready, /-/reload, served by HTTPFront
(keep-alive, header deadline, no thread per idle connection); TLS and basic auth on every path
when --web.config.file sets them."""

from __future__ import annotations

import html
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import parse_qs, quote, urlsplit

from exporter import __version__
from exporter.expose.basic_auth import BasicAuth
from exporter.expose.exposition import Exposition, TargetExposition
from exporter.expose.http_front import HTTPFront, Later, Request, Response
from exporter.expose.snapshot import SnapshotStore
from exporter.sharding import Roster

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
# (target text, auth_module or None) -> the target's name, (status, fixed text) refused, or
# None when no target is discovered (dynamic_targets unset)
Discover = Callable[[str, "str | None"], "str | tuple[int, str] | None"]


class ExporterHTTPServer:
    """The exporter's routes on an HTTPFront. `set_security` swaps the TLS context and the
    basic auth users at once (a reloaded --web.config.file): requests that arrive after it
    returns are checked against the new ones."""

    def __init__(self, address: tuple[str, int], exposition: Exposition, store: SnapshotStore,
                 telemetry_path: str, ready: Callable[[], bool],
                 wall_clock: Callable[[], float] = time.time,
                 reload: Callable[[], list[str]] | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 auth: BasicAuth | None = None,
                 roster: Callable[[], Roster] | None = None,
                 family: int = socket.AF_INET,
                 discover: Discover | None = None, first_poll_wait: float = 5.0,
                 source_of: Callable[[str], str] = lambda _: "configured") -> None:
        self.exposition = exposition
        self.targets = TargetExposition(store)
        # Configured targets and the shard; without one, every target in the store is ours.
        self.roster = roster or (lambda: Roster(tuple(s.target for s in store.read()[1])))
        self.auth = auth  # None: no basic auth
        self.reload = reload  # None unless --web.enable-lifecycle
        self.store = store
        self.telemetry_path = telemetry_path
        self.ready = ready
        self.wall_clock = wall_clock
        # Targets Prometheus discovers (dynamic_targets): None answers 404 for any target
        # that is not configured, as before.
        self.discover = discover
        self.first_poll_wait = first_poll_wait  # poll.timeout
        self.source_of = source_of  # the landing page's Source column for a target
        self.front = HTTPFront(address, self.respond, ssl_context, family,
                               wants_body=self._wants_body)
        self.server_address = self.front.server_address

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self.front.tls

    def set_security(self, ssl_context: ssl.SSLContext | None, auth: BasicAuth | None) -> None:
        """TLS first (it may fail: then nothing changed), then the users."""
        self.front.use_tls(ssl_context)
        self.auth = auth

    def serve(self) -> None:
        self.front.start()

    def shutdown(self) -> None:
        self.front.shutdown()

    def server_close(self) -> None:
        self.front.server_close()

    # -- routes ----------------------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        """Every path, health and reload included, is behind basic auth when it is set."""
        auth = self.auth
        verdict = True if auth is None else auth.check(request.headers.get("Authorization"))
        if verdict is BasicAuth.BUSY:  # uncached guesses in flight: no queueing behind them
            return _text(429, "Too many unverified logins; retry\n", {"Retry-After": "1"},
                         close=True)
        if not verdict:
            # A body left unread closes the connection (HTTPFront): keep-alive stays sane.
            return _text(401, "Unauthorized\n", {"WWW-Authenticate": "Basic"}, close=True)
        if request.method in ("GET", "HEAD"):
            return self._get(request)
        if request.method in ("POST", "PUT"):
            return self._post(request)
        return _text(501, "Unsupported method\n", close=True)

    def _get(self, request: Request) -> Response:
        parts = urlsplit(request.target)
        path = parts.path
        if path == self.telemetry_path:
            gzipped = _wants_gzip(request)
            return _metrics(self.exposition.body(gzipped), gzipped)
        if path == "/scrape":
            return self._scrape(parts.query, request)
        if path == "/":
            return Response(200, landing_page(self).encode(), "text/html; charset=utf-8")
        if path in ("/-/healthy", "/health"):
            return _text(200, "Healthy\n")
        if path == "/-/reload":
            return _text(405, "Only POST or PUT requests allowed\n", {"Allow": "POST, PUT"})
        if path == "/-/ready":
            return _text(200, "Ready\n") if self.ready() else _text(503, "Not ready\n")
        return _text(404, "Not found\n")

    def _wants_body(self, request: Request) -> bool:
        """Only a reload that will run reads its (ignored) body; any other is not waited for."""
        return (request.method in ("POST", "PUT") and self.reload is not None
                and urlsplit(request.target).path == "/-/reload")

    def _post(self, request: Request) -> Response:
        """Only /-/reload, and only with --web.enable-lifecycle (as in Prometheus). The
        answer does not wait for a body it will not use."""
        if urlsplit(request.target).path != "/-/reload":
            return _text(404, "Not found\n")
        if self.reload is None:
            return _text(403, "Lifecycle API is not enabled.\n")
        problems = self.reload()
        if problems:  # key paths and messages only: never a secret
            return _text(500, "failed to reload config:\n" + "".join(f"{p}\n" for p in problems))
        return _text(200, "")

    def _scrape(self, query: str, request: Request) -> Response:
        """One target for the multi-target pattern: the scraper's `instance` names it."""
        want_gzip = _wants_gzip(request)
        params = parse_qs(query, keep_blank_values=True)
        names = params.get("target", [])
        if len(names) != 1 or not names[0]:
            problem = "missing" if not names or not names[0] else "repeated"
            return _text(400, f"'target' parameter is {problem}: use /scrape?target=<name>\n")
        name, roster = names[0], self.roster()
        if name not in roster.known:
            found = None if self.discover is None else self._discovered(
                name, params.get("auth_module", []), request)
            return found or _text(404, f"unknown target {name!r}\n")
        if not roster.shard.owns(name):
            return _text(404, f"target {name!r} is not in this shard: it is in shard "
                         f"{roster.shard.of(name)}, this exporter is "
                         f"{roster.shard.describe()}\n")
        body = self.targets.body(name, want_gzip)
        if body is None:  # configured a moment ago by a reload, not yet published
            return _text(503, f"target {name!r} has no data yet\n", {"Retry-After": "1"})
        return _metrics(body, want_gzip)

    def _discovered(self, text: str, modules: list[str], request: Request) -> Response | None:
        """A target that is not configured: registered (or refused) by `discover`; a first
        scrape waits for the first poll up to min(Prometheus' timeout - 0.5 s, poll.timeout),
        since a reply at Prometheus' full timeout is already too late for it. Refusals have
        a fixed text: the target is never echoed."""
        assert self.discover is not None
        if len(modules) > 1:
            return _text(400, "the auth_module parameter is repeated\n")
        if modules and not modules[0]:
            modules = []
        found = self.discover(text, modules[0] if modules else None)
        if found is None:
            return None
        if isinstance(found, tuple):
            status, reason = found
            return _text(status, reason + "\n")
        name, want_gzip = found, _wants_gzip(request)
        header = _scrape_timeout(request)
        wait = self.first_poll_wait if header is None else min(header - 0.5,
                                                               self.first_poll_wait)

        def answer(polled: bool) -> Response:
            body = self.targets.body(name, want_gzip)
            if body is None or not polled:
                return _text(503, "the target's first poll has not finished yet\n",
                             {"Retry-After": "1"})
            return _metrics(body, want_gzip)

        return Response(200, later=Later(self.store.when_polled(name), wait, answer))


def _scrape_timeout(request: Request) -> float | None:
    """Prometheus' own deadline for this scrape (X-Prometheus-Scrape-Timeout-Seconds)."""
    try:
        value = float(request.headers.get("X-Prometheus-Scrape-Timeout-Seconds", ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _wants_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "")


def _metrics(body: bytes, gzipped: bool) -> Response:
    return Response(200, body, CONTENT_TYPE_METRICS,
                    {"Content-Encoding": "gzip"} if gzipped else {})


def _text(status: int, text: str, extra: dict[str, str] | None = None,
          close: bool = False) -> Response:
    return Response(status, text.encode("utf-8"), headers=extra or {}, close=close)


def landing_page(server: ExporterHTTPServer) -> str:
    now = server.wall_clock()
    _, snapshots = server.store.read()
    rows = []
    for snap in snapshots:
        state = "up" if snap.up else ("down" if snap.polled else "pending")
        age = f"{now - snap.last_poll_wall:.1f}s ago" if snap.last_poll_wall else "never"
        # quote() percent-encodes every character HTML would care about.
        link = f'<a href="/scrape?target={quote(snap.target, safe="")}">scrape</a>'
        source = html.escape(server.source_of(snap.target))
        rows.append(f"<tr><td>{html.escape(snap.target)}</td><td>{state}</td>"
                    f"<td>{age}</td><td>{html.escape(snap.error_kind or '')}</td>"
                    f"<td>{html.escape(snap.probe)}</td><td>{source}</td><td>{link}</td></tr>")
    path = html.escape(server.telemetry_path)
    return (
        "<!DOCTYPE html><html><head><title>redis-connection-exporter</title></head><body>"
        f"<h1>redis-connection-exporter</h1><p>Version {__version__}</p>"
        f'<ul><li><a href="{path}">Metrics</a></li><li><a href="/-/healthy">Health</a></li>'
        '<li><a href="/-/ready">Readiness</a></li></ul>'
        "<table><tr><th>Target</th><th>State</th><th>Last successful poll</th>"
        "<th>Error kind</th><th>New connections (probe)</th><th>Source</th><th>/scrape</th></tr>"
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


def serve_in_thread(server: ExporterHTTPServer) -> None:
    server.serve()
