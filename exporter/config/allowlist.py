"""Which addresses a discovered target may have: `dynamic_targets.allow` and an auth module's
`targets` (DESIGN.md "Targets that Prometheus discovers").

A rule is a CIDR or a host glob, each with an optional port: `10.0.0.0/8`, `10.1.2.3/32:6380`,
`[fd00::]/8:6379`, `*.svc.cluster.local:6379`, `cache-?.internal`. A target is allowed when every
address its host resolves to is inside a CIDR rule (so a name cannot point somewhere else later:
the check runs again at each reconnect), or when its host name itself matches a glob rule (the
name's zone is trusted, whatever it resolves to). A rule with a port allows only that port.
Pure: resolution happens in the caller (sources/dynamic.py, at registration and reconnect).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST_GLOB = re.compile(r"[a-z0-9*?.\-]+")


@dataclass(frozen=True)
class Rule:
    network: Network | None  # a CIDR rule
    glob: str | None  # a host glob rule (lower case)
    port: int | None  # None: any port


def parse_rule(text: str) -> Rule:
    """One rule; ValueError says what is wrong (the text is the user's own config)."""
    body, port = _split_port(text.strip())
    if not body:
        raise ValueError("empty rule")
    if body.startswith("["):  # [v6] or [v6]/prefix
        body = body[1:].replace("]", "", 1)
    try:
        network = ipaddress.ip_network(body, strict=False)
    except ValueError:
        glob = body.lower().removesuffix(".")
        if not _HOST_GLOB.fullmatch(glob):
            raise ValueError("not a CIDR or a host glob (letters, digits, '.', '-', '*', "
                             "'?')") from None
        if re.fullmatch(r"[0-9.*?]+", glob):  # `10.0.0.*` would also match 10.0.0.evil.com
            raise ValueError("an address pattern must be a CIDR, e.g. 10.0.0.0/24") from None
        return Rule(None, glob, port)
    return Rule(network, None, port)


def _split_port(text: str) -> tuple[str, int | None]:
    """`a.b:6379` -> ("a.b", 6379); `[v6]/8:6379` and `10.0.0.0/8:6379` too; a bare IPv6
    CIDR (`fd00::/8`) has no port."""
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1:] if close >= 0 else ""
        head = text[:close + 1] if close >= 0 else text
        if rest.startswith("/"):
            prefix, _, port = rest.partition(":")
            return head + prefix, _port(port) if port else None
        return head, _port(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        head, _, port = text.partition(":")
        return head, _port(port)
    return text, None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("port must be a number from 1 to 65535")
    return int(text)


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    return tuple(parse_rule(text) for text in texts)


def port_allowed(rules: Sequence[Rule], port: int) -> bool:
    """Whether any rule allows `port`: checked before a name is looked up."""
    return any(rule.port in (None, port) for rule in rules)


def allows(rules: Sequence[Rule], host: str, port: int, addresses: Sequence[str]) -> bool:
    """Whether `host:port`, resolving to `addresses`, is allowed (no address: never, not even
    for a name a glob allows: a connection goes to an address that was checked)."""
    if not addresses:
        return False
    name = host.lower().rstrip(".")
    for rule in rules:
        if rule.glob is not None and rule.port in (None, port) and _glob_match(rule.glob, name):
            return True
    return all(_address_allowed(rules, address, port) for address in addresses)


def _glob_match(glob: str, name: str) -> bool:
    """`*` spans labels (`*.svc.cluster.local` matches `redis.prod.svc.cluster.local`, a
    Kubernetes service): the zone after it is what is trusted. Names reaching here are
    strict host names (sources/dynamic.py: no NUL, no escapes)."""
    return fnmatch.fnmatchcase(name, glob)


def _address_allowed(rules: Sequence[Rule], address: str, port: int) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone is not the address
    except ValueError:
        return False
    return any(rule.network is not None and rule.port in (None, port)
               and ip.version == rule.network.version and ip in rule.network
               for rule in rules)
