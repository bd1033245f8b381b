"""Against a server without HELLO (a scripted Redis 5.0.10) the target is polled normally.

The poll connection must speak RESP2 with the handshake AUTH + CLIENT SETNAME and nothing else
(no HELLO, no CLIENT SETINFO), send plain INFO (5.0 takes one section) before CLIENT LIST, and
stay the one connection the exporter holds. CLIENT NO-EVICT, which 5.0 does not know, may be
tried once on a fresh connection while the version is still unknown: a server that cannot have
the capability neither reports it nor warns about it, and the target stays up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.conn.connection import CLIENT_NAME
from exporter.pipeline.info import parse_info
from tests.conftest import metrics_url
from tests.support.fake_resp2 import Command, ConnectionRecord, FakeRedis5
from tests.support.scrape import fetch, value, values, wait_for

PASSWORD = "s3cret-r5"  # a test fixture, not a credential
SETNAME: Command = ("CLIENT", "SETNAME", CLIENT_NAME)
WAIT = 20.0

ExporterFactory = Callable[..., Exporter]


@pytest.fixture
def fake() -> Iterator[FakeRedis5]:
    """Requested before exporter_factory, so it stops after the exporter did."""
    with FakeRedis5() as server:
        yield server


@pytest.fixture
def fake_with_password() -> Iterator[FakeRedis5]:
    with FakeRedis5(password=PASSWORD) as server:
        yield server


def config(port: int, probe: bool = True, db: str = "", **target: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "poll": {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"},
        "targets": [{"name": "r5", "url": f"redis://127.0.0.1:{port}{db}", **target}],
    }
    if not probe:
        raw["defaults"] = {"connect_probe": {"enabled": False}}
    return raw


def is_info(command: Command) -> bool:
    return command[0].upper() == "INFO"


def is_client_list(command: Command) -> bool:
    return tuple(word.upper() for word in command) == ("CLIENT", "LIST")


def poll_connections(fake: FakeRedis5) -> list[ConnectionRecord]:
    """Connections that polled (sent INFO); connect probes only PING."""
    return [record for record in fake.connections()
            if any(is_info(command) for command in fake.commands(record))]


def wait_for_polls(fake: FakeRedis5, polls: int) -> list[Command]:
    """Commands of the (single) poll connection once it has sent `polls` CLIENT LISTs."""

    def enough() -> list[Command] | None:
        pollers = poll_connections(fake)
        if not pollers:
            return None
        commands = fake.commands(pollers[0])
        return commands if sum(map(is_client_list, commands)) >= polls else None

    found = wait_for(enough, timeout=WAIT, message=f"{polls} polls with CLIENT LIST")
    assert isinstance(found, list)
    return found


def scrape_when_up(exporter: Exporter) -> str:
    """/metrics once the target is up with CLIENT LIST groups in it."""

    def ready() -> str | None:
        text = fetch(metrics_url(exporter))
        up = value(text, "redis_up", target="r5") == 1
        return text if up and values(text, "redis_client_connections", target="r5") else None

    text = wait_for(ready, timeout=WAIT, message="redis_up 1 with client groups")
    assert isinstance(text, str)
    return text


def handshake(commands: list[Command]) -> list[Command]:
    """What the connection sent before its first poll pipeline (NO-EVICT or INFO)."""
    for index, command in enumerate(commands):
        if is_info(command) or command[1:2] == ("NO-EVICT",):
            return commands[:index]
    return commands


def test_redis5_target_is_polled_normally(fake: FakeRedis5,
                                          exporter_factory: ExporterFactory) -> None:
    info = parse_info(fake.info_text)
    # The fake serves the INFO captured from a real 5.0.10 and says so.
    assert info["redis_version"] == FakeRedis5.VERSION == "5.0.10"
    exporter = exporter_factory(config(fake.port, probe=False))
    wait_for_polls(fake, 2)
    text = scrape_when_up(exporter)

    assert value(text, "redis_up", target="r5") == 1
    assert value(text, "redis_connected_clients", target="r5") == float(
        info["connected_clients"])
    assert value(text, "redis_instance_info", target="r5", redis_version="5.0.10",
                 role="master", redis_mode="standalone", server_name="redis",
                 server_version="5.0.10") == 1
    # 5.0 INFO has no maxclients: it comes from CONFIG GET maxclients.
    assert "maxclients" not in info
    assert value(text, "redis_max_clients", target="r5") == 10000
    used = float(info["connected_clients"]) + float(info["connected_slaves"])
    assert value(text, "redis_connection_saturation_ratio", target="r5") == pytest.approx(
        used / 10000)
    assert value(text, "redis_connection_headroom", target="r5") == 10000 - used

    # The groups sum to the line count of a CLIENT LIST reply the fake served: the fixture's
    # 17 lines plus the exporter's own poll connection.
    groups = values(text, "redis_client_connections", target="r5")
    served = fake.served_client_list_lines()
    assert sum(count for _, count in groups) in served
    assert set(served) == {fake.client_list_text.count("\n") + 1}
    # The fixture's own `redis-connection-exporter` line plus the one the exporter named.
    ours = [count for labels, count in groups if labels.get("name") == CLIENT_NAME]
    assert ours == [2]


def test_handshake_is_setname_only_and_info_is_plain(fake: FakeRedis5,
                                                     exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(config(fake.port))
    commands = wait_for_polls(fake, 3)
    scrape_when_up(exporter)

    assert handshake(commands) == [SETNAME]
    assert [record.name for record in poll_connections(fake)] == [CLIENT_NAME]
    _assert_poll_pipeline(commands)

    # The connect probe (a separate, short-lived connection) uses the same handshake + PING.
    def finished_probes() -> list[ConnectionRecord]:
        pollers = poll_connections(fake)
        return [record for record in fake.connections()
                if record not in pollers and record.closed]

    wait_for(finished_probes, timeout=WAIT, message="a finished connect probe")
    for record in finished_probes():
        assert fake.commands(record) == [SETNAME, ("PING",)]
    _assert_nothing_redis5_lacks(fake)


def test_handshake_with_password_env_auths_first(fake_with_password: FakeRedis5,
                                                 exporter_factory: ExporterFactory) -> None:
    fake = fake_with_password
    exporter = exporter_factory(config(fake.port, password_env="R5_PASSWORD"),
                                env={"R5_PASSWORD": PASSWORD})
    commands = wait_for_polls(fake, 2)
    text = scrape_when_up(exporter)

    # AUTH with the password alone: 5.0 has no ACL users and rejects AUTH with two arguments.
    assert handshake(commands) == [("AUTH", PASSWORD), SETNAME]
    _assert_poll_pipeline(commands)
    _assert_nothing_redis5_lacks(fake)
    assert not values(text, "redis_connection_exporter_poll_errors_total", target="r5")
    assert PASSWORD not in text


def test_handshake_selects_the_url_db_last(fake_with_password: FakeRedis5,
                                           exporter_factory: ExporterFactory) -> None:
    fake = fake_with_password
    exporter = exporter_factory(config(fake.port, probe=False, db="/3",
                                       password_env="R5_PASSWORD"),
                                env={"R5_PASSWORD": PASSWORD})
    commands = wait_for_polls(fake, 1)
    scrape_when_up(exporter)

    assert handshake(commands) == [("AUTH", PASSWORD), SETNAME, ("SELECT", "3")]
    assert fake.connections()[0].db == 3


def test_no_evict_error_on_5_0_is_neither_a_capability_nor_a_warning(
        fake: FakeRedis5, exporter_factory: ExporterFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    exporter = exporter_factory(config(fake.port, probe=False))
    commands = wait_for_polls(fake, 3)
    text = scrape_when_up(exporter)

    # Today the exporter tries NO-EVICT once, first in the first poll on the fresh connection,
    # before it knows the version; once INFO said 5.0.10 it never sends it again. Never sending
    # it would be fine too; sending it after INFO reported 5.x, or a second time, is not.
    no_evict = [index for index, command in enumerate(commands)
                if command[1:2] == ("NO-EVICT",)]
    first_info = next(index for index, command in enumerate(commands) if is_info(command))
    assert no_evict in ([], [first_info - 1]), commands
    if no_evict:
        assert commands[no_evict[0]] == ("CLIENT", "NO-EVICT", "on")
    # 5.0 cannot have the capability (client eviction came with 7.0): not 1, not 0, no warning.
    assert value(text, "redis_connection_exporter_target_capability", target="r5",
                 capability="client_no_evict") is None
    assert not [record for record in caplog.records
                if "capability missing" in record.getMessage()]
    assert value(text, "redis_up", target="r5") == 1
    assert not values(text, "redis_connection_exporter_poll_errors_total", target="r5")


def test_one_poll_connection_across_polls(fake: FakeRedis5,
                                          exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(config(fake.port, probe=False))
    commands = wait_for_polls(fake, 4)
    text = scrape_when_up(exporter)

    assert sum(map(is_info, commands)) >= 4
    assert len(fake.connections()) == 1
    assert not fake.connections()[0].closed
    assert value(text, "redis_connection_exporter_pool_connections_created_total",
                 target="r5") == 1
    assert value(text, "redis_connection_exporter_pool_max_connections", target="r5") == 1


def _assert_poll_pipeline(commands: list[Command]) -> None:
    """INFO without sections; every CLIENT LIST preceded by an INFO of the same poll."""
    infos = [command for command in commands if is_info(command)]
    assert infos and all(command == ("INFO",) for command in infos), infos
    info_since_list = False
    for command in commands:
        if is_info(command):
            info_since_list = True
        elif is_client_list(command):
            assert info_since_list, f"CLIENT LIST without an INFO before it: {commands}"
            info_since_list = False


def _assert_nothing_redis5_lacks(fake: FakeRedis5) -> None:
    """No HELLO and no CLIENT SETINFO on any connection, poll or probe."""
    for record in fake.connections():
        for command in fake.commands(record):
            assert command[0].upper() != "HELLO", command
            assert tuple(word.upper() for word in command[:2]) != ("CLIENT", "SETINFO"), command
