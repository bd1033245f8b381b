"""Re-reading `--web.config.file` and its certificate files without a restart.

exporter-toolkit re-reads them per connection, and cert-manager rotates certificates every 60
to 90 days. Here a reload (SIGHUP, `/-/reload`) re-reads them, and so does a change of any of
the files (stat-ed every second, as `password_file` is before each poll; a swapped Kubernetes
secret symlink counts). A bad new file keeps the last good TLS context and users: the problems
are logged with their key paths and the reload gauge goes to 0.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

from exporter.config.web import WebConfig, WebConfigError, load_web_config, server_ssl_context
from exporter.expose.basic_auth import BasicAuth
from exporter.logsetup import kv

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0
Signature = tuple[tuple[int, int, int, int] | None, ...]


@dataclass(frozen=True)
class WebSecurity:
    """What the HTTP side applies: the TLS context and the basic auth check (None: off)."""

    config: WebConfig
    tls: ssl.SSLContext | None
    auth: BasicAuth | None


def files_of(config: WebConfig) -> tuple[str, ...]:
    tls = config.tls
    found = [config.path]
    if tls is not None:
        found += [path for path in (tls.cert_file, tls.key_file, tls.client_ca_file) if path]
    return tuple(found)


def signature(paths: tuple[str, ...]) -> Signature:
    """What changes when a file is rewritten or its symlink swapped; None for a missing one."""
    found: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            found.append(None)
            continue
        found.append((stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev))
    return tuple(found)


def load_security(path: str, previous: WebSecurity | None = None) -> WebSecurity:
    """Parse and load; raises WebConfigError (key paths, no secret)."""
    return security_of(load_web_config(path), previous)


def security_of(config: WebConfig, previous: WebSecurity | None = None) -> WebSecurity:
    """What an already parsed file applies; unchanged users keep their BasicAuth and its
    cache of verdicts."""
    tls = server_ssl_context(config.tls) if config.tls else None
    if previous is not None and previous.config.users == config.users:
        auth = previous.auth
    else:
        auth = BasicAuth(config.users) if config.users else None
    return WebSecurity(config, tls, auth)


class WebConfigReloader:
    """Holds the security in force; `reload` applies a new one through `apply`, and `watch`
    reloads when a file changes."""

    def __init__(self, security: WebSecurity, apply: Callable[[WebSecurity], None],
                 succeeded: Callable[[bool], None]) -> None:
        self.security = security
        self._apply = apply
        self._succeeded = succeeded
        self._lock = threading.Lock()
        self._seen = signature(files_of(security.config))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self) -> list[str]:
        """Re-read now; the problems, each with its key path (empty when applied)."""
        with self._lock:
            path = self.security.config.path
            # Taken before reading: a file written during the read is seen as a change, and
            # read again (a certificate, then its key, written one after the other).
            seen = signature(files_of(self.security.config))
            try:
                security = load_security(path, self.security)
                self._apply(security)
            except WebConfigError as error:
                self._seen = seen  # retried when a file changes again
                return self._rejected(path, error.problems)
            except Exception as error:
                self._seen = seen
                return self._rejected(path, [f"cannot load: {type(error).__name__}"])
            self.security = security
            self._seen = seen  # what changed since (or another file list) reloads once more
            self._succeeded(True)
        log.info("web config reloaded %s", kv(file=path, tls=security.tls is not None,
                                              basic_auth_users=len(security.config.users)))
        return []

    def _rejected(self, path: str, problems: list[str]) -> list[str]:
        for problem in problems:
            log.error("web config reload rejected, keeping the last good one %s",
                      kv(file=path, problem=problem))
        self._succeeded(False)
        return [f"web config: {problem}" for problem in problems]

    def changed(self) -> bool:
        with self._lock:
            return signature(files_of(self.security.config)) != self._seen

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="web-config-watch",
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            try:
                if self.changed():
                    self.reload()
            except Exception:  # the watch must outlive any surprise
                log.exception("web config watch failed; retrying")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
