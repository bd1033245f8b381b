"""The held poll connection against real servers (the output-buffer guard on every build of the
`server_build` matrix, the rest on the default Redis 7.0).

What Redis itself sees of the exporter's one connection (CLIENT LIST line, INFO commandstats)
is the ground truth here: flags, db, keepalive PINGs, how often CLIENT LIST and INFO really ran,
and that Redis never had to disconnect it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import Exporter, WebSettings
from exporter.cli import load, parse_args
from exporter.conn.connection import CLIENT_NAME
from tests.conftest import metrics_url
from tests.support.clients import RawClient, commandstats, open_named
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for
from tests.support.servers import ServerBuild

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}
WAIT = 20.0
CREATED = "redis_connection_exporter_pool_connections_created_total"
CAPABILITY = "redis_connection_exporter_target_capability"
LAST_SUCCESS = "redis_connection_exporter_last_poll_success_timestamp_seconds"
DUPLICATE_MESSAGE = "targets are the same Redis server"

ExporterFactory = Callable[..., Exporter]
RedisFactory = Callable[..., RedisServer]




# -- what Redis sees -------------------------------------------------------------------------
def parse_client_line(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for word in line.split(" "):
        key, sep, val = word.partition("=")
        if sep:
            fields[key] = val
    return fields


def client_lines(port: int, ids: Sequence[int] = ()) -> list[dict[str, str]]:
    """CLIENT LIST (only `ids` when given) over a fresh connection.

    A fresh connection, because a held one could hit the server's `timeout`; `ids`, because
    under a small output-buffer limit a full CLIENT LIST would get the test's client killed.
    """
    client = RawClient(port)
    try:
        command: list[str | int] = ["CLIENT", "LIST"]
        if ids:
            command += ["ID", *ids]
        text = client.call(*command).decode("utf-8", "replace")
    finally:
        client.close()
    return [parse_client_line(line) for line in text.splitlines() if line]


def exporter_line(port: int, ids: Sequence[int] = ()) -> dict[str, str]:
    lines = [line for line in client_lines(port, ids) if line.get("name") == CLIENT_NAME]
    assert len(lines) == 1, f"expected one exporter connection, CLIENT LIST shows {lines}"
    return lines[0]


# -- what the exporter serves -----------------------------------------------------------------
def scrape(exporter: Exporter) -> str:
    return fetch(metrics_url(exporter))


def describe(text: str, target: str = "cache") -> str:
    """The target's state in one line, for failure messages."""
    errors = {f"{lab['step']}/{lab['kind']}": val for lab, val in
              values(text, "redis_connection_exporter_poll_errors_total", target=target)}
    capabilities = {lab["capability"]: val for lab, val in values(text, CAPABILITY,
                                                                   target=target)}
    return (f"redis_up={value(text, 'redis_up', target=target)} "
            f"created={value(text, CREATED, target=target)} errors={errors} "
            f"capabilities={capabilities}")


def wait_metric(exporter: Exporter, metric: str, expected: float, timeout: float = WAIT,
                **labels: str) -> str:
    """/metrics once `metric{labels}` equals `expected`."""
    last = ""

    def check() -> str | None:
        nonlocal last
        last = scrape(exporter)
        return last if value(last, metric, **labels) == expected else None

    try:
        found = wait_for(check, timeout=timeout, message=f"{metric}{labels} == {expected}")
    except AssertionError as error:
        raise AssertionError(f"{error}; exporter state: {describe(last)}") from None
    assert isinstance(found, str)
    return found


def wait_up(exporter: Exporter, target: str, with_groups: bool = True) -> str:
    def check() -> str | None:
        text = scrape(exporter)
        if value(text, "redis_up", target=target) != 1:
            return None
        if with_groups and not values(text, "redis_client_connections", target=target):
            return None
        return text

    found = wait_for(check, timeout=WAIT, message=f"redis_up 1 for {target}")
    assert isinstance(found, str)
    return found


def wait_polls(exporter: Exporter, target: str, polls: int, timeout: float = WAIT) -> str:
    """/metrics after `polls` more successful INFO steps (the success timestamp moved)."""
    seen: set[float] = set()
    text = ""

    def moved() -> bool:
        nonlocal text
        text = scrape(exporter)
        stamp = value(text, LAST_SUCCESS, target=target, step="info")
        if stamp is not None:
            seen.add(stamp)
        return len(seen) > polls

    wait_for(moved, timeout=timeout, interval=0.05, message=f"{polls} more polls of {target}")
    return text


def config(url: str, name: str = "cache", poll: dict[str, str] | None = None,
           **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"poll": poll or FAST, "defaults": NO_PROBE,
                           "targets": [{"name": name, "url": url}]}
    raw.update(extra)
    return raw


# -- 1. handshake as Redis sees it ------------------------------------------------------------
def test_poll_connection_is_no_evict_resp2_and_sends_no_client_info(
        redis_server: RedisServer, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(config(redis_server.url))
    text = wait_up(exporter, "cache")

    assert value(text, CAPABILITY, target="cache", capability="client_no_evict") == 1
    line = exporter_line(redis_server.port)
    assert "e" in line["flags"], f"CLIENT NO-EVICT is not on: flags={line['flags']}"
    assert line["resp"] == "2"  # no HELLO 3
    assert line.get("lib-name", "") == ""  # no CLIENT SETINFO (7.0 has no such field)
    assert line.get("lib-ver", "") == ""
    stats = commandstats(redis_server.port)
    assert "hello" not in stats
    assert "client|setinfo" not in stats
    assert stats.get("client|no-evict") == 1  # once, on the one connection it opened
    assert value(text, CREATED, target="cache") == 1


# -- 2. db index and unix sockets -------------------------------------------------------------
def test_db_index_in_the_url_selects_that_db(
        redis_server: RedisServer, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(config(f"{redis_server.url}/5"))
    wait_up(exporter, "cache")
    line = exporter_line(redis_server.port)
    assert line["db"] == "5"


def test_unix_socket_target_is_polled_and_labelled_with_its_path(
        redis_factory: RedisFactory, tmp_path: Path) -> None:
    server = redis_factory(unixsocket=True)
    assert server.unixsocket is not None
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump({"poll": FAST, "defaults": NO_PROBE}), encoding="utf-8")
    # The command line path: --redis.addr targets are labelled <host>:<port> or the socket path.
    args = parse_args(["--config.file", str(file), "--redis.addr",
                       f"unix://{server.unixsocket}"], {})
    exporter = Exporter(load(args, {}), WebSettings(listen_address="127.0.0.1:0"))
    exporter.start()
    try:
        text = wait_up(exporter, server.unixsocket)
        assert value(text, "redis_up", target=server.unixsocket) == 1
        assert {lab["target"] for lab, _ in values(text, "redis_up")} == {server.unixsocket}
        line = exporter_line(server.port)
        assert line["addr"].startswith("/") or line["addr"].startswith("unix")
        assert "U" in line["flags"]  # a unix-socket client
    finally:
        exporter.stop()


# -- 3. keepalive against the server's `timeout` ----------------------------------------------
def test_held_connection_is_pinged_before_the_server_timeout_closes_it(
        redis_factory: RedisFactory, exporter_factory: ExporterFactory) -> None:
    server = redis_factory(extra_args=["--timeout", "2"])
    exporter = exporter_factory(config(server.url, poll={
        "interval": "10s", "client_list_interval": "10s", "timeout": "2s"}))
    text = wait_up(exporter, "cache")
    assert value(text, CREATED, target="cache") == 1
    first = exporter_line(server.port)
    pings_before = commandstats(server.port).get("ping", 0)

    time.sleep(6)  # three server timeouts (the PING timing is unit-tested: test_scheduler)

    text = scrape(exporter)
    assert value(text, "redis_up", target="cache") == 1
    assert value(text, CREATED, target="cache") == 1, "the server's timeout closed the connection"
    now = exporter_line(server.port)
    assert now["id"] == first["id"]
    assert int(now["idle"]) <= 2
    pings = commandstats(server.port).get("ping", 0) - pings_before
    # timeout 2 s -> a PING every second: about 6 in 6 s, minus a poll that replaced one.
    assert pings >= 3, f"only {pings} PINGs in 6 s"
    errors = values(text, "redis_connection_exporter_poll_errors_total", target="cache")
    assert errors == []


# -- 4. CLIENT LIST skipped when its reply would overflow the output buffer -------------------
OBUF_LIMIT = ["--client-output-buffer-limit", "normal", "64kb", "32kb", "60"]
OBUF_KILL_LOG = "scheduled to be closed ASAP for overcoming of output buffer limits"
FITS = "client_list_fits_output_buffer"


def later_ids(client: RawClient, count: int = 500) -> list[int]:
    """Client ids after `client`'s own: the connections opened after it."""
    reply = client.call("CLIENT", "ID")
    assert reply[:1] == b":", reply
    first = int(reply[1:]) + 1
    return list(range(first, first + count))


def output_buffer_kills(server: RedisServer) -> list[str]:
    """Clients Redis closed for overcoming the output-buffer limit, from its log."""
    with open(Path(server.workdir) / "redis.log", encoding="utf-8", errors="replace") as log:
        return [line for line in log if OBUF_KILL_LOG in line]


def group_total(text: str, target: str = "cache") -> float:
    return sum(val for _, val in values(text, "redis_client_connections", target=target))


def test_client_list_is_skipped_when_the_reply_would_exceed_the_output_buffer_limit(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory, clients: list[RawClient]) -> None:
    server = redis_factory(server=server_build, extra_args=OBUF_LIMIT)
    clients += open_named(server.port, [f"idle-worker-{index:04d}" for index in range(400)])
    # The exporter connects after these 400. Before 6.2 CLIENT LIST cannot filter by id,
    # and a full one would get the test's own connection killed: counters say it there.
    by_id = server_build.at_least(6, 2)
    ids = later_ids(clients[-1])
    exporter = exporter_factory(config(server.url))

    wait_metric(exporter, CAPABILITY, 0, target="cache", capability=FITS)
    first_id = exporter_line(server.port, ids)["id"] if by_id else None
    lists_before = server_build.list_calls(commandstats(server.port))
    text = wait_polls(exporter, "cache", 4)
    lists_after = server_build.list_calls(commandstats(server.port))
    assert value(text, "redis_up", target="cache") == 1
    assert value(text, CAPABILITY, target="cache", capability=FITS) == 0
    assert values(text, "redis_client_connections", target="cache") == []
    assert value(text, "redis_connected_clients", target="cache") == 401  # INFO still polled
    assert lists_after == lists_before, "CLIENT LIST ran although it does not fit"
    assert value(text, CREATED, target="cache") == 1, "Redis dropped the poll connection"
    if by_id:
        assert exporter_line(server.port, ids)["id"] == first_id
    assert output_buffer_kills(server) == []

    for client in clients[20:]:
        client.close()
    del clients[20:]
    wait_metric(exporter, CAPABILITY, 1, target="cache", capability=FITS)
    text = wait_up(exporter, "cache")
    assert group_total(text) == 21  # 20 idle clients and the exporter itself
    assert value(text, CREATED, target="cache") == 1
    if by_id:
        assert exporter_line(server.port, ids)["id"] == first_id
    assert output_buffer_kills(server) == []


def test_output_buffer_guard_recovers_when_clients_jump_between_polls(
        redis_factory: RedisFactory, exporter_factory: ExporterFactory,
        clients: list[RawClient]) -> None:
    """400 clients arrive after a poll measured 1: one CLIENT LIST may be lost, not more."""
    server = redis_factory(extra_args=OBUF_LIMIT)
    exporter = exporter_factory(config(server.url))
    wait_up(exporter, "cache")
    clients += open_named(server.port, [f"idle-worker-{index:04d}" for index in range(400)])

    wait_metric(exporter, CAPABILITY, 0, target="cache", capability=FITS)
    text = wait_polls(exporter, "cache", 3)
    assert value(text, "redis_up", target="cache") == 1
    assert values(text, "redis_client_connections", target="cache") == []
    created = value(text, CREATED, target="cache")
    assert created is not None and created <= 2, describe(text)
    assert len(output_buffer_kills(server)) <= 1


def test_groups_are_not_served_stale_while_client_list_does_not_fit(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory, clients: list[RawClient]) -> None:
    """150 clients fit a 64 KB output-buffer limit on every build; then enough join that the
    next reply would not (from the build's own bytes per line: 157 on 5.0, 344 on Valkey
    8.1): the last CLIENT LIST that fit is not served for ever once the guard skips it."""
    server = redis_factory(server=server_build, extra_args=OBUF_LIMIT)
    clients += open_named(server.port, [f"idle-worker-{index:04d}" for index in range(150)])
    exporter = exporter_factory(config(server.url))
    wait_for(lambda: group_total(scrape(exporter)) == 151, timeout=WAIT,
             message="groups of 151 clients")
    per_line = value(scrape(exporter), "redis_connection_exporter_client_list_bytes",
                     target="cache")
    assert per_line is not None
    per_line /= 151
    total = math.ceil(65536 / (1.2 * per_line)) + 10  # the guard's margin is 20%
    clients += open_named(server.port,
                          [f"idle-worker-{index:04d}" for index in range(150, total)])

    text = wait_metric(exporter, CAPABILITY, 0, target="cache", capability=FITS)
    text = wait_polls(exporter, "cache", 2)
    assert value(text, "redis_up", target="cache") == 1
    assert value(text, CAPABILITY, target="cache", capability=FITS) == 0
    assert output_buffer_kills(server) == []
    assert values(text, "redis_client_connections", target="cache") == [], (
        f"CLIENT LIST is skipped, yet groups of {group_total(text)} clients are served "
        f"(the server has {value(text, 'redis_connected_clients', target='cache')})")


# -- 5. CLIENT LIST backoff on large servers --------------------------------------------------
def test_client_list_backs_off_above_the_client_threshold(
        redis_server: RedisServer, exporter_factory: ExporterFactory,
        clients: list[RawClient]) -> None:
    clients += open_named(redis_server.port, [f"svc-{index:02d}" for index in range(30)])
    exporter = exporter_factory(config(
        redis_server.url, client_list={"backoff": {"above_clients": 10, "interval": "1m"}}))
    wait_metric(exporter, "redis_connection_exporter_client_list_interval_seconds", 60,
                target="cache")
    before = commandstats(redis_server.port)
    time.sleep(6)
    after = commandstats(redis_server.port)
    text = scrape(exporter)

    assert after.get("client|list") == 1, "CLIENT LIST ran again inside its 1m interval"
    polled_info = after["info"] - before["info"] - 1  # minus our own INFO commandstats
    assert polled_info >= 4, f"INFO ran {polled_info} times in 6 s of 1s polls"
    assert value(text, "redis_connection_exporter_client_list_interval_seconds",
                 target="cache") == 60
    assert value(text, "redis_up", target="cache") == 1

    for client in clients[5:]:
        client.close()
    del clients[5:]
    wait_metric(exporter, "redis_connection_exporter_client_list_interval_seconds", 1,
                target="cache")
    wait_for(lambda: commandstats(redis_server.port).get("client|list", 0) >= 2, timeout=10,
             message="CLIENT LIST again below the threshold")


def test_client_list_interval_is_the_configured_one_below_the_threshold(
        redis_server: RedisServer, exporter_factory: ExporterFactory,
        clients: list[RawClient]) -> None:
    clients += open_named(redis_server.port, [f"svc-{index:02d}" for index in range(5)])
    exporter = exporter_factory(config(
        redis_server.url, client_list={"backoff": {"above_clients": 10, "interval": "1m"}}))
    wait_up(exporter, "cache")
    text = wait_polls(exporter, "cache", 2)
    assert value(text, "redis_connection_exporter_client_list_interval_seconds",
                 target="cache") == 1
    assert commandstats(redis_server.port).get("client|list", 0) >= 2


# -- 6. /metrics never touches Redis ----------------------------------------------------------
def test_metrics_requests_do_not_reach_redis(
        redis_server: RedisServer, exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(config(redis_server.url))
    wait_up(exporter, "cache")
    url = metrics_url(exporter)
    before = commandstats(redis_server.port)
    started = time.monotonic()
    for index in range(200):
        assert fetch(url)
        time.sleep(max(started + 3.0 * (index + 1) / 200 - time.monotonic(), 0.0))
    elapsed = time.monotonic() - started
    after = commandstats(redis_server.port)

    polls = math.ceil(elapsed)  # 1s polls
    lists = after.get("client|list", 0) - before.get("client|list", 0)
    infos = after["info"] - before["info"] - 1  # minus our own INFO commandstats
    assert lists <= 4, f"{lists} CLIENT LIST in {elapsed:.1f}s of 200 requests"
    assert 1 <= infos <= polls + 1, f"{infos} INFO in {elapsed:.1f}s of 200 requests"


# -- 7. two targets, one server ---------------------------------------------------------------
def test_two_targets_on_one_server_are_reported_once(
        redis_server: RedisServer, exporter_factory: ExporterFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    raw = config(redis_server.url)
    raw["targets"] = [{"name": "a", "url": redis_server.url},
                      {"name": "b", "url": redis_server.url}]
    exporter = exporter_factory(raw)
    wait_up(exporter, "a")
    wait_up(exporter, "b")
    wait_polls(exporter, "a", 3)
    wait_polls(exporter, "b", 3)
    warnings = [record for record in caplog.records
                if DUPLICATE_MESSAGE in record.getMessage()]
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert "target=a" in message or "target=b" in message
    assert "other_target=a" in message or "other_target=b" in message


# -- 8. INFO first, then CLIENT LIST ----------------------------------------------------------
def test_info_runs_before_client_list_so_it_does_not_see_the_list_reply(
        redis_factory: RedisFactory, exporter_factory: ExporterFactory,
        clients: list[RawClient]) -> None:
    server = redis_factory(extra_args=["--maxclients", "2200"])
    clients += open_named(server.port, [f"idle-{index:04d}" for index in range(2000)])
    exporter = exporter_factory(config(server.url))

    def big_list() -> str | None:
        text = scrape(exporter)
        size = value(text, "redis_connection_exporter_client_list_bytes", target="cache")
        return text if size is not None and size > 400_000 else None

    wait_for(big_list, timeout=WAIT, message="a CLIENT LIST of 2000 clients")
    # Redis' cron samples each client's output buffer about once a second and INFO reports the
    # largest sample of the last 8 s, so a reply caught while Redis was still writing it shows
    # for a while (more often on a loaded machine). What must never happen is every poll's
    # INFO seeing that poll's own CLIENT LIST: some poll within 10 s must report less.
    seen = []
    for _ in range(12):
        text = wait_polls(exporter, "cache", 1)
        size = value(text, "redis_connection_exporter_client_list_bytes", target="cache")
        recent = value(text, "redis_client_recent_max_output_buffer_bytes", target="cache")
        assert size is not None and recent is not None
        seen.append((recent, size))
        if recent < size / 10:
            break
    else:
        raise AssertionError(f"every poll's INFO saw a CLIENT LIST reply: {seen}")
    # The poll pipeline is INFO, CLIENT LIST, CONFIG GET x3: the last command Redis ran for us.
    line = exporter_line(server.port)
    assert line["cmd"] == "config|get", line
