"""Watch a target's password_file, so that rotated credentials apply without a reload.

Secret managers (Kubernetes Secrets, Vault agents) rewrite the file in place or swap a symlink;
either changes what `os.stat` reports. Each poll stats the file (a few microseconds) and reads
it only when that changed; a file that disappears or cannot be read keeps the last password.
"""

from __future__ import annotations

import logging
import os

from exporter.config.checks import Problems
from exporter.config.model import TargetConfig
from exporter.config.secret import Secret
from exporter.config.targets import read_password_file
from exporter.conn.connection import PollConnection
from exporter.conn.errors import classify
from exporter.logsetup import kv

log = logging.getLogger(__name__)


class PasswordFileWatcher:
    def __init__(self, target: str, path: str, current: Secret | None) -> None:
        self._target = target
        self._path = path
        self._current = current
        self._seen = self._stat()

    def _stat(self) -> tuple[float, int, int] | None:
        try:
            status = os.stat(self._path)  # follows symlinks: a swapped link is a change
        except OSError:
            return None
        return status.st_mtime, status.st_size, status.st_ino

    def changed(self) -> Secret | None:
        """The new password when the file's content changed since the last call, else None."""
        seen = self._stat()
        if seen is None or seen == self._seen:
            return None
        self._seen = seen
        problems = Problems()
        secret = read_password_file(self._path, "password_file", problems)
        if secret is None:
            log.warning("password_file unreadable, keeping the last password %s",
                        kv(target=self._target, problem="; ".join(problems.items)))
            return None
        if secret == self._current:
            return None
        self._current = secret
        return secret


class CredentialRotation:
    """A new password (from the watched file, or a reload) waits here until the held
    connection accepted it: AUTH in place, retried each poll while the server refuses it
    (the file may change before the server's ACL does)."""

    def __init__(self, target: TargetConfig) -> None:
        self._target = target.name
        self._watcher = (PasswordFileWatcher(target.name, target.password_file, target.password)
                         if target.password_file else None)
        self._pending: Secret | None = None
        self._refused_logged = False

    def offer(self, password: Secret) -> None:
        self._pending = password
        self._refused_logged = False

    def apply(self, conn: PollConnection) -> None:
        """Before a poll: AUTH the held connection with a new password, if there is one."""
        fresh = self._watcher.changed() if self._watcher is not None else None
        if fresh is not None:
            self.offer(fresh)
        if self._pending is None:
            return
        try:
            conn.reauth(self._pending)
        except Exception as error:
            if not self._refused_logged:  # once per new password, not once per poll
                log.warning("new password not accepted yet, keeping the old one %s",
                            kv(target=self._target, kind=classify(error)))
                self._refused_logged = True
            return
        self._pending = None
        log.info("credentials rotated in place %s", kv(target=self._target))
