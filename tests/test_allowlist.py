"""The allowlist of discovered targets (exporter.config.allowlist.py): rules and matching."""

from __future__ import annotations

import ipaddress

import pytest

from exporter.config.allowlist import Rule, allows, parse_rule, parse_rules


@pytest.mark.parametrize(("text", "rule"), [
    ("10.0.0.0/8", Rule(ipaddress.ip_network("10.0.0.0/8"), None, None)),
    ("10.1.2.3/32:6380", Rule(ipaddress.ip_network("10.1.2.3/32"), None, 6380)),
    ("10.1.2.3", Rule(ipaddress.ip_network("10.1.2.3/32"), None, None)),
    ("10.1.2.3:6379", Rule(ipaddress.ip_network("10.1.2.3/32"), None, 6379)),
    ("fd00::/8", Rule(ipaddress.ip_network("fd00::/8"), None, None)),
    ("[fd00::]/8:6379", Rule(ipaddress.ip_network("fd00::/8"), None, 6379)),
    ("[::1]:6379", Rule(ipaddress.ip_network("::1/128"), None, 6379)),
    ("*.svc.cluster.local:6379", Rule(None, "*.svc.cluster.local", 6379)),
    ("Cache-?.Internal", Rule(None, "cache-?.internal", None)),
])
def test_rules_parse(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty rule"),
    ("10.0.0.0/8:0", "port must be a number from 1 to 65535"),
    ("10.0.0.0/8:http", "port must be a number from 1 to 65535"),
    ("bad_host!", "not a CIDR or a host glob"),
    ("10.0.0.*", "an address pattern must be a CIDR"),
])
def test_bad_rules_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(text)


RULES = parse_rules(["127.0.0.1/32", "10.1.2.3/32:6380", "*.svc.cluster.local:6379"])


@pytest.mark.parametrize(("host", "port", "addresses", "allowed"), [
    ("127.0.0.1", 6379, ["127.0.0.1"], True),
    ("127.0.0.2", 6379, ["127.0.0.2"], False),
    ("localhost", 6379, ["127.0.0.1"], True),
    ("localhost", 6379, ["127.0.0.1", "::1"], False),  # every address, not any
    ("10.1.2.3", 6380, ["10.1.2.3"], True),
    ("10.1.2.3", 6379, ["10.1.2.3"], False),  # the rule names its port
    ("cache.prod.svc.cluster.local", 6379, ["203.0.113.9"], True),  # the zone is trusted
    ("cache.prod.svc.cluster.local", 6380, ["127.0.0.1"], True),  # ...and 127.0.0.1 is allowed
    ("cache.prod.svc.cluster.local", 6380, ["203.0.113.9"], False),
    ("evil.example", 6379, [], False),  # resolves to nothing
    ("cache.prod.svc.cluster.local", 6379, [], False),  # a glob too: nothing to connect to
    ("127.0.0.1", 6379, ["not an address"], False),
])
def test_every_resolved_address_must_be_allowed(host: str, port: int, addresses: list[str],
                                                allowed: bool) -> None:
    assert allows(RULES, host, port, addresses) is allowed


def test_no_rules_allow_nothing() -> None:
    assert not allows((), "127.0.0.1", 6379, ["127.0.0.1"])
