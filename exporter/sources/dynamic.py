"""Targets that Prometheus discovers: what `/scrape?target=...&auth_module=...` may register.

Decides only (the app starts and stops the pollers): it parses and normalizes the target,
checks it against `dynamic_targets.allow` and the auth module's `targets` on every address the
host resolves to, and keeps the caps and the last scrape of each target. A registered target is
connected to by the address that was checked (its TLS name stays the host), so a name cannot be
pointed elsewhere later; when it is down at a scrape, its host is resolved and checked again.
Refusals carry a fixed text: nothing the request said is echoed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from exporter.config.allowlist import allows, port_allowed
from exporter.config.model import (
    AuthModule,
    DynamicTargetsConfig,
    Endpoint,
    TargetConfig,
)
from exporter.config.targets import merge_target, parse_target_url
from exporter.expose.families import Rejection as Reason

Resolve = Callable[[str, int], list[str]]
LOOKUPS = 4  # DNS lookups of new targets at once


_REFUSALS = {
    Reason.MALFORMED: (400, "the target parameter is not host:port or a redis:// or "
                            "rediss:// URL"),
    Reason.CREDENTIALS: (400, "the target must not carry a user or a password: use an "
                              "auth_module"),
    Reason.UNKNOWN_MODULE: (404, "unknown auth_module"),
    Reason.NOT_ALLOWED: (403, "the target is not allowed by dynamic_targets.allow"),
    Reason.MODULE_NOT_ALLOWED: (403, "the auth_module is not allowed for the target, or the "
                                     "target is registered with another one"),
    Reason.MAX_TARGETS: (429, "dynamic_targets.max_targets reached"),
    Reason.PENDING: (429, "dynamic_targets.max_pending first polls in flight"),
}


class Refused(Exception):
    """A refusal: `status` and a fixed `text` for the answer, `reason` for the counter."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.status, self.text = _REFUSALS[reason]
        super().__init__(reason)


@dataclass(frozen=True)
class Registered:
    """A discovered target: its poller's configuration and what it was admitted with."""

    key: tuple[str, str, int, int]  # scheme, host (lower case), port, db
    module: str | None
    addresses: tuple[str, ...]
    target: TargetConfig


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(item[4][0]) for item in found})


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def parse(text: str) -> Endpoint:
    """`10.0.0.7:6379`, `redis://10.0.0.7`, `rediss://cache:6380/2`: the endpoint, with the host
    in one canonical spelling (an IP literal as `ipaddress` writes it, a name in lower case
    without a trailing dot), or Refused. A unix socket is refused later, after the module."""
    url = text if "://" in text else f"redis://{text}"
    try:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise Refused(Reason.CREDENTIALS)
        endpoint = parse_target_url(url)
    except ValueError:
        raise Refused(Reason.MALFORMED) from None
    if endpoint.scheme == "unix":
        return endpoint
    return replace(endpoint, host=canonical_host(endpoint.host))


def canonical_host(host: str) -> str:
    """An IP literal or a strict host name (letters, digits, '-', dots; 253 characters at
    most), else Refused: no NUL, percent-escape or other byte may reach a glob or DNS."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if (not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels)
            or all(label.isdigit() for label in labels)):  # `10.1`: not an IP, not a name
        raise Refused(Reason.MALFORMED)
    return name


class DynamicTargets:
    """The discovered targets of one exporter, their caps and their last scrapes."""

    def __init__(self, config: DynamicTargetsConfig, modules: Mapping[str, AuthModule],
                 clock: Callable[[], float], resolver: Resolve = resolve) -> None:
        self.config = config
        self.modules = dict(modules)
        self._clock = clock
        self._resolve = resolver
        self._lock = threading.Lock()
        self._lookups = threading.BoundedSemaphore(LOOKUPS)
        self._targets: dict[str, Registered] = {}  # by target name (host:port[/db])
        self._last_scrape: dict[str, float] = {}
        self._pending: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._targets)

    def get(self, name: str) -> Registered | None:
        with self._lock:
            return self._targets.get(name)

    def admit(self, text: str, module_name: str | None,
              reserved: Callable[[str], bool] = lambda _: False) -> tuple[Registered, bool]:
        """The target a scrape names, registered now (True) or already (False); Refused in
        DESIGN.md's order: 400, 404, 403, 429. `reserved(name)`: a configured target has
        that name (a discovered target never takes it over)."""
        endpoint = parse(text)
        module = None
        if module_name is not None:
            module = self.modules.get(module_name)
            if module is None:
                raise Refused(Reason.UNKNOWN_MODULE)
        if endpoint.scheme == "unix":
            raise Refused(Reason.NOT_ALLOWED)  # a socket path is not a network address
        key = (endpoint.scheme, endpoint.host, endpoint.port, endpoint.db)
        name = endpoint.display
        with self._lock:
            known = self._targets.get(name)
            if known is not None and known.key == key and known.module == module_name:
                self._last_scrape[name] = self._clock()
                return known, False
        if reserved(name):
            raise Refused(Reason.NOT_ALLOWED)
        if not port_allowed(self.config.allow, endpoint.port):
            raise Refused(Reason.NOT_ALLOWED)  # refused before any DNS lookup
        addresses = self._lookup(endpoint.host, endpoint.port)
        self._check(endpoint, addresses, module)
        if known is not None:
            raise Refused(Reason.MODULE_NOT_ALLOWED)
        with self._lock:
            if name in self._targets:  # registered by a concurrent request meanwhile
                registered = self._targets[name]
                if registered.key != key or registered.module != module_name:
                    raise Refused(Reason.MODULE_NOT_ALLOWED)
                self._last_scrape[name] = self._clock()
                return registered, False
            if len(self._targets) >= self.config.max_targets:
                raise Refused(Reason.MAX_TARGETS)
            if len(self._pending) >= self.config.max_pending:
                raise Refused(Reason.PENDING)
            registered = Registered(key, module_name, addresses,
                                    self._target(name, endpoint, addresses, module))
            self._targets[name] = registered
            self._last_scrape[name] = self._clock()
            self._pending.add(name)
        return registered, True

    def _lookup(self, host: str, port: int) -> tuple[str, ...]:
        """Resolve, at most LOOKUPS at once (a slow name cannot hold every HTTP thread)."""
        if not self._lookups.acquire(blocking=False):
            raise Refused(Reason.PENDING)
        try:
            return tuple(self._resolve(host, port))
        finally:
            self._lookups.release()

    def _check(self, endpoint: Endpoint, addresses: tuple[str, ...],
               module: AuthModule | None) -> None:
        """`allow`, then the module's own `targets`; a module with TLS settings only over TLS
        (its password must not leave in clear text to a `redis://` spelling)."""
        if not addresses or not allows(self.config.allow, endpoint.host, endpoint.port,
                                       addresses):
            raise Refused(Reason.NOT_ALLOWED)
        if module is not None and (
                not allows(module.targets, endpoint.host, endpoint.port, addresses)
                or (module.settings.get("tls") and endpoint.scheme != "rediss")):
            raise Refused(Reason.MODULE_NOT_ALLOWED)

    def recheck(self, name: str) -> Registered | None:
        """A down target's host resolved and checked again: None when nothing changed (or it
        is gone), a new registration with the new addresses, or Refused (then dropped)."""
        with self._lock:
            registered = self._targets.get(name)
        if registered is None:
            return None
        addresses = self._lookup(registered.key[1], registered.key[2])
        if addresses == registered.addresses:
            return None
        return self._renew(name, registered, addresses)

    def revalidate(self) -> tuple[list[str], list[Registered]]:
        """After a reload: every registered target checked again against the new `allow`
        and modules (no DNS: its checked addresses). (names dropped, registrations whose
        settings changed), the dropped ones forgotten."""
        dropped, renewed = [], []
        for name in self.names():
            registered = self.get(name)
            if registered is None:
                continue
            try:
                fresh = self._renew(name, registered, registered.addresses)
            except Refused:
                dropped.append(name)
                continue
            if fresh is not None and fresh.target != registered.target:
                renewed.append(fresh)
        return dropped, renewed

    def _renew(self, name: str, registered: Registered,
               addresses: tuple[str, ...]) -> Registered | None:
        scheme, host, port, db = registered.key
        endpoint = Endpoint(scheme, host=host, port=port, db=db)
        module = self.modules.get(registered.module) if registered.module else None
        try:
            if registered.module is not None and module is None:
                raise Refused(Reason.MODULE_NOT_ALLOWED)  # the module was removed
            self._check(endpoint, addresses, module)
        except Refused:
            self.forget(name)
            raise
        renewed = replace(registered, addresses=addresses,
                          target=self._target(name, endpoint, addresses, module))
        with self._lock:
            if self._targets.get(name) is not registered:
                return None  # forgotten or replaced meanwhile
            self._targets[name] = renewed
        return renewed

    def _target(self, name: str, endpoint: Endpoint, addresses: tuple[str, ...],
                module: AuthModule | None) -> TargetConfig:
        """Connect to the checked address; TLS still verifies the host's name. Settings merge
        as for a configured target, from the public defaults and the module only."""
        pinned = replace(endpoint, host=addresses[0]) if addresses else endpoint
        target = merge_target(name, pinned, self.config.defaults,
                              module.settings if module else {})
        if endpoint.scheme == "rediss" and target.tls.server_name is None:
            target = replace(target, tls=replace(target.tls, server_name=endpoint.host))
        return replace(target, source="dynamic")

    def first_poll_done(self, name: str) -> None:
        with self._lock:
            self._pending.discard(name)

    def last_scrape(self, name: str) -> float | None:
        with self._lock:
            return self._last_scrape.get(name)

    def expired(self) -> list[str]:
        """Targets not scraped for `expire_after`; forgotten here, to be stopped by the caller."""
        now = self._clock()
        with self._lock:
            gone = [name for name, last in self._last_scrape.items()
                    if now - last >= self.config.expire_after]
        for name in gone:
            self.forget(name)
        return gone

    def forget(self, name: str) -> None:
        with self._lock:
            self._targets.pop(name, None)
            self._last_scrape.pop(name, None)
            self._pending.discard(name)
