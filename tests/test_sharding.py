"""--shard.index / --shard.count (DESIGN.md "Scale-out"): Prometheus' own `hashmod` on the target
name, checked against a real prometheus; the hostname-ordinal default; bad flags; replicas that
split the targets between them, before and after a reload."""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from exporter import cli
from exporter.app import Exporter, WebSettings
from exporter.config.loader import build_config
from exporter.config.model import Config
from exporter.conn.connection import CLIENT_NAME
from exporter.sharding import Roster, Shard, hashmod, hostname_ordinal, resolve_shard
from tests.support.clients import RawClient
from tests.support.prometheus_sharding import scrape_through_prometheus
from tests.support.redis_server import RedisServer, free_port
from tests.support.scrape import fetch, samples, wait_for

SLOW = {"interval": "5s", "client_list_interval": "5s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}

# Computed once with Prometheus' algorithm and confirmed by the real prometheus check below
# (those names are among NAMES): a regression in the hash shows here without prometheus.
VECTORS = {
    "cache": {2: 0, 3: 0, 5: 4, 7: 3, 1000: 524},
    "sessions": {2: 1, 3: 1, 5: 3, 7: 3, 1000: 623},
    "queue-3": {2: 0, 3: 1, 5: 4, 7: 2, 1000: 574},
    "10.0.0.1:6379/2": {2: 1, 3: 2, 5: 4, 7: 3, 1000: 819},
    "ключ": {2: 1, 3: 1, 5: 0, 7: 2, 1000: 975},
}
NAMES = [*VECTORS, "a b", 'we"ird\\name', "redis-connection-exporter-0", "x", "y", "z",
         *(f"shard-{i}" for i in range(15))]


def config(names: list[str], url: str | None = None) -> Config:
    """Targets named `names`, all on `url` (default: a closed port: they stay down)."""
    url = url or f"redis://127.0.0.1:{free_port()}"
    raw = {"poll": SLOW, "defaults": NO_PROBE,
           "targets": [{"name": name, "url": url} for name in names]}
    return build_config(yaml.safe_load(yaml.safe_dump(raw)), env={})


@pytest.fixture
def sharded(exporter_factory: Callable[..., Exporter]) -> Callable[..., Exporter]:
    """In-process exporters on free ports, with a shard."""

    def make(cfg: Config, shard: Shard, **kwargs: Any) -> Exporter:
        return exporter_factory(cfg, web=WebSettings("127.0.0.1:0", enable_lifecycle=True),
                                shard=shard, **kwargs)
    return make


def metric_targets(exporter: Exporter) -> set[str]:
    """Every `target` label on /metrics (before the first poll only self metrics carry one)."""
    text = fetch(f"http://{exporter.bound_address()}/metrics")
    return {labels["target"] for _, labels, _ in samples(text) if "target" in labels}


# --------------------------------------------------------------------------------------------
# The hash


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_known_vectors(name: str) -> None:
    assert {modulus: hashmod(name, modulus) for modulus in VECTORS[name]} == VECTORS[name]


def test_hash_is_md5_low_64_bits_big_endian() -> None:
    rng = random.Random(7)
    for _ in range(200):
        name = "".join(rng.choices(string.printable, k=rng.randint(0, 40)))
        digest = hashlib.md5(name.encode()).hexdigest()
        assert hashmod(name, 2**64) == int(digest[16:], 16)  # the last 8 of the 16 bytes


def test_real_prometheus_hashmod_and_scrape_agree_with_our_shards(
        sharded: Callable[..., Exporter]) -> None:
    """Prometheus relabels NAMES with hashmod 2, 3 and 5 and scrapes /scrape?target= through
    an exporter that is shard 0 of 2: its shards are ours, and exactly our shard is up."""
    exporter = sharded(config(NAMES), Shard(0, 2))
    seen = scrape_through_prometheus(NAMES, exporter.bound_address(), moduli=(2, 3, 5))
    assert {(modulus, name): target.shard for (modulus, name), target in seen.items()} == {
        (modulus, name): hashmod(name, modulus) for modulus in (2, 3, 5) for name in NAMES}
    for name in NAMES:
        target = seen[2, name]
        if hashmod(name, 2) == 0:
            assert (target.health, target.error) == ("up", ""), name
        else:
            assert target.health == "down" and "404" in target.error, name


def test_every_target_lands_in_exactly_one_shard() -> None:
    rng = random.Random(42)
    names = ["".join(rng.choices(string.ascii_lowercase + string.digits + "-:/.", k=12))
             for _ in range(50)]
    for count in range(1, 6):
        shards = [Shard(index, count) for index in range(count)]
        for name in names:
            owners = [shard.index for shard in shards if shard.owns(name)]
            assert owners == [hashmod(name, count)], (name, count)
        selected = [shard.select(config(names).targets) for shard in shards]
        assert sorted(t.name for part in selected for t in part) == sorted(names)


def test_roster_lists_targets_of_other_shards_in_order() -> None:
    roster = Roster(tuple(NAMES[:6]), Shard(0, 2))
    assert roster.elsewhere() == tuple(n for n in NAMES[:6] if hashmod(n, 2) == 1)
    assert Roster(("a", "b")).elsewhere() == ()


# --------------------------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize(("hostname", "ordinal"), [
    ("redis-connection-exporter-3", 3), ("exporter-0", 0), ("a-b-12", 12),
    ("exporter-2.exporter.monitoring.svc.cluster.local", 2), ("exporter", None),
    ("exporter-", None), ("exporter3", None), ("exporter-3x", None), ("", None)])
def test_hostname_ordinal(hostname: str, ordinal: int | None) -> None:
    assert hostname_ordinal(hostname) == ordinal


def test_resolve_defaults_and_hostname_ordinal() -> None:
    assert resolve_shard(None, None, "laptop") == Shard(0, 1)
    assert resolve_shard(None, "1", "laptop") == Shard(0, 1)  # no ordinal needed for one shard
    assert resolve_shard(None, "4", "exporter-3") == Shard(3, 4)
    assert resolve_shard("1", "4", "exporter-3") == Shard(1, 4)  # the flag wins
    assert resolve_shard("0", None, "exporter-3") == Shard(0, 1)


def check_config(argv: list[str], capsys: pytest.CaptureFixture[str],
                 env: dict[str, str] | None = None, hostname: str = "laptop") -> tuple[int, str]:
    code = cli.main(["--check-config", "--redis.addr", "redis://127.0.0.1:1", *argv],
                    env=env or {}, hostname=lambda: hostname)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(("argv", "env", "hostname", "expected"), [
    (["--shard.count", "0"], {}, "x-0", "--shard.count must be at least 1, got 0"),
    (["--shard.count", "-2"], {}, "x-0", "--shard.count must be at least 1"),
    (["--shard.count", "two"], {}, "x-0", "--shard.count must be an integer, got 'two'"),
    (["--shard.count", "2", "--shard.index", "2"], {}, "x", "--shard.index must be in 0..1"),
    (["--shard.count", "2", "--shard.index", "-1"], {}, "x", "--shard.index must be in 0..1"),
    (["--shard.index", "1"], {}, "x", "--shard.index must be in 0..0"),
    (["--shard.count", "2", "--shard.index", "1.5"], {}, "x", "--shard.index must be an integer"),
    (["--shard.count", "3"], {}, "laptop", "hostname 'laptop' has no trailing -<ordinal>"),
    (["--shard.count", "3"], {}, "exporter-3", "from the hostname 'exporter-3' is 3, not below"),
    ([], {"REDIS_CONNECTION_EXPORTER_SHARD_COUNT": "x"}, "a-0", "--shard.count must be an "),
    ([], {"REDIS_CONNECTION_EXPORTER_SHARD_COUNT": "2",
          "REDIS_CONNECTION_EXPORTER_SHARD_INDEX": "5"}, "a-0", "--shard.index must be in 0..1"),
])
def test_bad_shard_flags_exit_2_with_the_reason(
        argv: list[str], env: dict[str, str], hostname: str, expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, output = check_config(argv, capsys, env, hostname)
    assert code == cli.EXIT_CONFIG
    assert output.startswith("flag error: ") and expected in output


def test_shard_flags_from_environment_and_hostname_reach_the_exporter(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = check_config(["--shard.count", "4"], capsys, hostname="rce-2")
    assert code == 0 and "config OK: 1 target(s), " in output and "in shard 2 of 4" in output
    captured: list[Shard | None] = []

    def fake_run(*args: Any) -> int:
        captured.append(args[4])
        return 0

    monkeypatch.setattr(cli, "run", fake_run)
    env = {"REDIS_CONNECTION_EXPORTER_SHARD_INDEX": "1",
           "REDIS_CONNECTION_EXPORTER_SHARD_COUNT": "3"}
    assert cli.main([], env=env, hostname=lambda: "rce-0") == 0
    assert cli.main(["--shard.index", "2"], env=env, hostname=lambda: "rce-0") == 0  # flag wins
    assert cli.main([], env={}, hostname=lambda: "rce-0") == 0
    assert captured == [Shard(1, 3), Shard(2, 3), Shard(0, 1)]


# --------------------------------------------------------------------------------------------
# Replicas


def exporter_connections(port: int) -> int:
    client = RawClient(port)
    try:
        return client.call("CLIENT", "LIST").decode().count(f"name={CLIENT_NAME} ")
    finally:
        client.close()


def test_two_replicas_poll_disjoint_shards_covering_every_target(
        redis_server: RedisServer, sharded: Callable[..., Exporter]) -> None:
    names = ["cache", "sessions", "queue", "rate-limit", "jobs", "locks"]
    cfg = config(names, redis_server.url)
    first, second = sharded(cfg, Shard(0, 2)), sharded(cfg, Shard(1, 2))
    expected = [{n for n in names if hashmod(n, 2) == index} for index in (0, 1)]
    assert all(expected), "the names must put targets in both shards"
    assert [metric_targets(first), metric_targets(second)] == expected
    # Each replica holds connections to its own targets only: six in all, one per target.
    wait_for(lambda: exporter_connections(redis_server.port) == len(names),
             message="one poll connection per target across both replicas")

    page = fetch(f"http://{first.bound_address()}/")
    assert "shard 0 of 2" in page
    for name in expected[1]:
        assert f"{name} (shard 1)" in page  # listed as another replica's target
    for name in expected[0]:
        assert f"<td>{name}</td>" in page


def test_reload_applies_the_shard_to_the_new_targets(sharded: Callable[..., Exporter]) -> None:
    before, after = NAMES[:6], NAMES[4:14]
    current = {"config": config(before)}
    exporter = sharded(current["config"], Shard(1, 3), loader=lambda: current["config"])
    assert metric_targets(exporter) == {n for n in before if hashmod(n, 3) == 1}
    current["config"] = config(after)
    assert exporter.reload() == []
    assert metric_targets(exporter) == {n for n in after if hashmod(n, 3) == 1}
    assert {p.target.name for p in exporter.pollers.values()} == {
        n for n in after if hashmod(n, 3) == 1}
    assert exporter.roster.names == tuple(after)
