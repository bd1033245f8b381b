"""A poller's decisions with the time given, not slept through: which steps a poll sends,
the CLIENT LIST interval and its backoff, the output-buffer guard, the retry of a refused
capability, keepalive timing, and the connect probe's restraint at maxclients. Real-server
tests (test_poll_connection, test_redis_cost, test_saturation) prove them end to end."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from exporter.config.model import BackoffConfig, ClientListConfig, Config, PollConfig, TargetConfig
from exporter.config.targets import parse_target_url
from exporter.conn.watchdog import Watchdog
from exporter.expose.families import Capability, Kind, Step
from exporter.pipeline import steps
from exporter.pipeline.server import ServerFacts
from exporter.poll.plan import CAPABILITY_RETRY_SECONDS, Planner
from exporter.poll.probe import SKIPS_AT_MAXCLIENTS, ConnectProbe
from exporter.poll.stats import TargetStats

BYTES = 280.0  # CLIENT LIST bytes per client


def planner(interval: float = 10.0, client_list_interval: float = 30.0,
            above_clients: int | None = 5000, backoff: float = 300.0) -> Planner:
    target = TargetConfig(name="cache", endpoint=parse_target_url("redis://127.0.0.1:6379"))
    config = Config(poll=PollConfig(interval=interval, client_list_interval=client_list_interval,
                                    timeout=5.0),
                    client_list=ClientListConfig(backoff=BackoffConfig(above_clients, backoff)),
                    targets=(target,))
    return Planner(target, config)


def facts(clients: float = 100, version: tuple[int, ...] | None = (7, 0, 15),
          obuf_limit: float = 0.0) -> ServerFacts:
    return ServerFacts(version=version, connected_clients=clients, obuf_hard_limit=obuf_limit,
                       config_loaded=True)


def test_client_list_runs_on_its_interval_with_half_a_poll_of_slack() -> None:
    plan, known = planner(), facts()
    assert plan.client_list(100.0, known, BYTES, {}).due  # never listed yet
    plan.last_list = 100.0
    assert not plan.client_list(124.9, known, BYTES, {}).due
    assert plan.client_list(125.0, known, BYTES, {}).due  # 30 s - 10 s / 2
    assert plan.client_list(125.0, known, BYTES, {}).interval == 30.0


def test_client_list_backs_off_on_large_servers() -> None:
    plan = planner(above_clients=5000, backoff=300.0)
    plan.last_list = 0.0
    large = facts(clients=5001)
    assert plan.client_list(200.0, large, BYTES, {}).interval == 300.0
    assert not plan.client_list(294.9, large, BYTES, {}).due
    assert plan.client_list(295.0, large, BYTES, {}).due
    assert plan.client_list(200.0, facts(clients=5000), BYTES, {}).due  # not above: 30 s
    assert planner(above_clients=None).client_list(0.0, large, BYTES, {}).interval == 30.0


def test_client_list_is_skipped_while_its_reply_would_not_fit_the_output_buffer() -> None:
    plan = planner()
    limited = facts(clients=195, obuf_limit=65536)  # 195 x 280 x 1.2 = 65,520 bytes
    decision = plan.client_list(0.0, limited, BYTES, {})
    assert decision.due and decision.fits
    decision = plan.client_list(0.0, facts(clients=196, obuf_limit=65536), BYTES, {})
    assert not decision.due and decision.fits is False
    assert plan.client_list(0.0, facts(clients=10_000), BYTES, {}).fits  # no limit set


def test_a_refused_capability_is_asked_for_again_after_five_minutes() -> None:
    plan = planner()
    refused = {Capability.CLIENT_LIST: 0, Capability.CONFIG: 0}
    plan.refused(Capability.CLIENT_LIST, 1000.0)
    plan.refused(Capability.CONFIG, 1000.0)
    again = 1000.0 + CAPABILITY_RETRY_SECONDS
    assert CAPABILITY_RETRY_SECONDS == 300.0
    assert not plan.client_list(again - 0.1, facts(), BYTES, refused).due
    assert plan.client_list(again, facts(), BYTES, refused).due
    assert not plan.config_due(again - 0.1, True, facts(), refused)
    assert plan.config_due(again, False, facts(), refused)


def test_config_is_read_with_each_client_list_and_until_it_is_loaded() -> None:
    plan, known = planner(), facts()
    assert plan.config_due(0.0, True, known, {})
    assert not plan.config_due(0.0, False, known, {})
    known.config_loaded = False
    assert plan.config_due(0.0, False, known, {})


def names(plan: Planner, fresh: bool, known: ServerFacts, with_list: bool,
          capabilities: dict[str, int] | None = None) -> tuple[tuple[str, ...], bool]:
    first = plan.first_round(fresh, 0.0, known, with_list, capabilities or {})
    return first.round.names(), first.deferred


def test_a_new_connection_sends_no_evict_info_and_config_and_defers_client_list() -> None:
    plan = planner()
    assert names(plan, True, facts(version=None), True) == (
        (steps.NO_EVICT, steps.INFO, steps.CONFIG), True)
    first = plan.first_round(True, 0.0, facts(version=None), True, {})
    assert first.round.steps[1].commands == (("INFO",),)  # version unknown: plain INFO
    assert names(plan, True, facts(version=(6, 2, 14)), True) == (
        (steps.INFO, steps.CONFIG), True)  # no CLIENT NO-EVICT before 7.0
    assert names(plan, True, facts(), True, {Capability.CLIENT_NO_EVICT: 0}) == (
        (steps.INFO, steps.CONFIG), True)


def test_a_held_connection_sends_everything_in_one_round_trip_without_a_limit() -> None:
    plan, known = planner(), facts()
    assert names(plan, False, known, True) == (
        (steps.INFO, steps.CLIENT_LIST, steps.CONFIG), False)  # INFO and the list adjacent
    first = plan.first_round(False, 0.0, known, True, {})
    assert first.round.steps[0].commands == (steps.INFO_SECTIONS,)
    assert names(plan, False, known, False) == ((steps.INFO,), False)
    # With an output-buffer limit, CLIENT LIST waits for this poll's INFO and CONFIG.
    assert names(plan, False, facts(obuf_limit=65536), True) == (
        (steps.INFO, steps.CONFIG), True)


def test_keepalive_only_when_the_server_timeout_is_shorter_than_two_polls() -> None:
    assert ServerFacts(server_timeout=0).keepalive_interval(10.0) is None
    assert ServerFacts(server_timeout=3).keepalive_interval(10.0) == 1.5
    assert ServerFacts(server_timeout=30).keepalive_interval(10.0) is None
    assert ServerFacts(server_timeout=0.6).keepalive_interval(10.0) == 0.5


# -- the connect probe at maxclients ---------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that accepts TCP connections and never answers: counts connection attempts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def attempts(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_at_maxclients_the_probe_connects_only_every_fifth_time(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    target = TargetConfig(name="full", endpoint=parse_target_url(f"redis://127.0.0.1:{port}"))
    stats = TargetStats("full", 10.0)
    probe = ConnectProbe(lambda: target, 0.3, Watchdog(), stats, lambda: 0.0,
                         lambda step, seconds: None)

    def run(full: bool) -> None:
        probe.run(False, full, lambda error: Kind.TIMEOUT, str)

    for _ in range(2):
        for _ in range(SKIPS_AT_MAXCLIENTS):
            run(full=True)
            assert (stats.probe_success, stats.probe_kind) == (0.0, Kind.MAXCLIENTS)
            assert attempts(listener) == 0, "connected while Redis is full"
        run(full=True)  # every fifth: a real attempt (this port never answers: timeout)
        assert (stats.probe_success, stats.probe_kind) == (0.0, Kind.TIMEOUT)
        assert attempts(listener) == 1
    run(full=False)  # headroom again: every probe connects
    run(full=False)
    assert attempts(listener) == 2
    assert stats.errors[(Step.PROBE, Kind.MAXCLIENTS)] == 2 * SKIPS_AT_MAXCLIENTS
