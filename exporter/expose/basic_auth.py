"""Basic auth on every HTTP path: `Authorization: Basic` against `basic_auth_users` of
`--web.config.file` (parsed in exporter/config/web.py), as exporter-toolkit checks it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping

import bcrypt


class BasicAuth:
    """Checks `Authorization: Basic` against `basic_auth_users`, as exporter-toolkit does.

    bcrypt costs ~70 ms at cost 10, so verdicts are cached (up to CACHE_SIZE each, accepted
    and refused apart, so a flood of wrong guesses never evicts a good login) under an HMAC
    of user, password and stored hash with a per-process key: no plain password is kept. An
    unknown user is checked against a dummy hash of the same cost, so the answer takes as long
    as a wrong password does and does not tell which users exist. At most BCRYPT_SLOTS checks
    run at once; past that `check` answers BUSY at once rather than queueing, so uncached
    guesses cannot hold the HTTP threads while a cached login (Prometheus) waits behind them.
    """

    CACHE_SIZE = 100
    BCRYPT_SLOTS = 2
    BUSY = None

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, bool] = {}  # accepted
        self._refused: dict[bytes, bool] = {}
        self._lock = threading.Lock()  # the caches only: never held during a bcrypt
        self._slots = threading.BoundedSemaphore(self.BCRYPT_SLOTS)
        # Made now, not on the first unknown user, whose answer would then take longer.
        costs = [int(hashed.split(b"$")[2]) for hashed in self._users.values()] or [4]
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=max(costs)))

    def check(self, header: str | None) -> bool | None:
        """True, False, or BUSY (None: every bcrypt slot is taken; ask again shortly)."""
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self._users.get(user)
        hashed = stored if stored is not None else self._dummy
        key = hmac.new(self._key, b"\0".join(
            (str(len(user)).encode(), user.encode(), hashed, password)), hashlib.sha256).digest()
        with self._lock:
            verdict = self._cache.get(key, self._refused.get(key))
        if verdict is None:
            if not self._slots.acquire(blocking=False):
                return self.BUSY
            try:
                verdict = bcrypt.checkpw(password[:72], hashed)  # bcrypt reads 72 bytes
            finally:
                self._slots.release()
            with self._lock:
                cache = self._cache if verdict and stored is not None else self._refused
                if len(cache) >= self.CACHE_SIZE:
                    for old in list(cache)[: self.CACHE_SIZE // 10]:
                        del cache[old]
                cache[key] = verdict
        return verdict and stored is not None


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        return None
