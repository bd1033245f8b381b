"""Graceful degradation against real servers started per test, on every build where the case
exists (Redis 5.0 to 8.0, Valkey 8: the `server_build` matrix; LOADING on the default build).

A server that disables or renames CONFIG and CLIENT, an ACL user without +client, a Lua script
past `busy-reply-threshold`, a server loading its RDB: each costs the exporter only what the
server really refuses, is reported with its capability and `kind`, and never touches another
target. What Redis itself sees (CLIENT LIST over a test connection) is the ground truth for
the poll connection's name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Exporter
from exporter.conn.connection import CLIENT_NAME
from tests.conftest import metrics_url
from tests.support.clients import RawClient, info_field
from tests.support.redis_server import RedisServer
from tests.support.scrape import fetch, value, values, wait_for
from tests.support.servers import ServerBuild

FAST = {"interval": "1s", "client_list_interval": "1s", "timeout": "1s"}
NO_PROBE = {"connect_probe": {"enabled": False}}
FAST_PROBE = {"connect_probe": {"enabled": True, "interval": "1s"}}
CAPABILITY = "redis_connection_exporter_target_capability"
ERRORS = "redis_connection_exporter_poll_errors_total"
CREATED = "redis_connection_exporter_pool_connections_created_total"
LAST_SUCCESS = "redis_connection_exporter_last_poll_success_timestamp_seconds"
PROBE = "redis_connection_exporter_connect_probe_success"
WAIT = 20.0

ExporterFactory = Callable[..., Exporter]
RedisFactory = Callable[..., RedisServer]


# -- helpers ------------------------------------------------------------------------------------
def scrape(exporter: Exporter) -> str:
    return fetch(metrics_url(exporter))


def errors(text: str, target: str, step: str, kind: str) -> float:
    return value(text, ERRORS, target=target, step=step, kind=kind) or 0.0


def capability(text: str, target: str, name: str) -> float | None:
    return value(text, CAPABILITY, target=target, capability=name)


def describe(text: str, target: str) -> str:
    """The target's state in one line, for failure messages."""
    failed = {f"{lab['step']}/{lab['kind']}": val for lab, val in
              values(text, ERRORS, target=target)}
    caps = {lab["capability"]: val for lab, val in values(text, CAPABILITY, target=target)}
    return (f"redis_up={value(text, 'redis_up', target=target)} "
            f"probe={value(text, PROBE, target=target)} errors={failed} capabilities={caps}")


def wait_until(exporter: Exporter, target: str, check: Callable[[str], bool],
               message: str, timeout: float = WAIT) -> str:
    """/metrics once `check` holds for it; the target's state in the message otherwise."""
    last = ""

    def ready() -> str | None:
        nonlocal last
        last = scrape(exporter)
        return last if check(last) else None

    try:
        found = wait_for(ready, timeout=timeout, message=message)
    except AssertionError as error:
        raise AssertionError(f"{error}; {target}: {describe(last, target)}") from None
    assert isinstance(found, str)
    return found


def wait_polls(exporter: Exporter, target: str, polls: int) -> str:
    """/metrics after `polls` more successful INFO steps of `target`."""
    seen: set[float] = set()

    def moved(text: str) -> bool:
        stamp = value(text, LAST_SUCCESS, target=target, step="info")
        if stamp is not None:
            seen.add(stamp)
        return len(seen) > polls

    return wait_until(exporter, target, moved, f"{polls} more polls of {target}")


def exporter_lines(port: int, client_command: str = "CLIENT") -> list[dict[str, str]]:
    """CLIENT LIST as Redis sees it, but for the test connection that asks."""
    admin = RawClient(port)
    try:
        own = admin.call(client_command, "ID").decode().lstrip(":")
        text = admin.call(client_command, "LIST").decode("utf-8", "replace")
    finally:
        admin.close()
    lines = []
    for line in text.splitlines():
        fields = dict(word.split("=", 1) for word in line.split(" ") if "=" in word)
        if fields and fields.get("id") != own:
            lines.append(fields)
    return lines


def logged(caplog: pytest.LogCaptureFixture, message: str, **fields: str) -> int:
    wanted = [f"{key}={val}" for key, val in fields.items()]
    return sum(1 for record in caplog.records if message in record.getMessage()
               and all(item in record.getMessage().split() for item in wanted))


def exporter_for(targets: list[dict[str, Any]], defaults: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    return {"poll": FAST, "defaults": defaults or NO_PROBE, "targets": targets}


# -- 1. CONFIG disabled -------------------------------------------------------------------------
def test_config_disabled_keeps_info_saturation_and_groups(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # maxclients 777: only INFO can tell the exporter that (6.2+), CONFIG GET is gone.
    server = redis_factory(server=server_build,
                           extra_args=["--rename-command", "CONFIG", "", "--maxclients", "777"])
    exporter = exporter_factory(exporter_for([{"name": "noconfig", "url": server.url}]))

    def settled(text: str) -> bool:
        return (capability(text, "noconfig", "config") == 0
                and bool(values(text, "redis_client_connections", target="noconfig")))

    wait_until(exporter, "noconfig", settled, "config 0 and groups")
    # A reconnect sends CONFIG GET again (a new connection re-reads it): still one error and
    # one log line, because the capability did not change.
    [line] = exporter_lines(server.port)
    admin = RawClient(server.port)
    try:
        assert admin.call("CLIENT", "KILL", "ID", line["id"]) == b":1"
    finally:
        admin.close()
    wait_until(exporter, "noconfig", lambda text: value(text, CREATED, target="noconfig") == 2,
               "a reconnect")
    text = wait_polls(exporter, "noconfig", 2)

    assert value(text, "redis_up", target="noconfig") == 1
    assert capability(text, "noconfig", "config") == 0
    assert capability(text, "noconfig", "client_list") == 1
    assert capability(text, "noconfig", "client_setname") == 1
    assert errors(text, "noconfig", "info", "unsupported") == 1
    assert not [lab for lab, val in values(text, ERRORS, target="noconfig")
                if lab["kind"] != "unsupported" and val]
    connected = value(text, "redis_connected_clients", target="noconfig")
    assert connected is not None and connected >= 1
    if server_build.maxclients_in_info:
        assert value(text, "redis_max_clients", target="noconfig") == 777
        ratio = value(text, "redis_connection_saturation_ratio", target="noconfig")
        assert ratio == pytest.approx(connected / 777)
        assert value(text, "redis_connection_headroom", target="noconfig") == 777 - connected
    else:  # before 6.2 only CONFIG GET knows the limit: no saturation, rather than a guess
        for family in ("redis_max_clients", "redis_connection_saturation_ratio",
                       "redis_connection_headroom"):
            assert value(text, family, target="noconfig") is None, family
    assert value(text, "redis_client_connections", target="noconfig", name=CLIENT_NAME,
                 client_type="normal") == 1
    assert logged(caplog, "capability missing", target="noconfig", capability="config") == 1
    assert logged(caplog, "capability missing", target="noconfig") == 1  # nothing else


# -- 2. renamed CLIENT and CONFIG ---------------------------------------------------------------
RENAMED = ["--rename-command", "CLIENT", "MYCLIENT", "--rename-command", "CONFIG", "MYCONFIG"]


def test_renamed_commands_setting_keeps_every_capability(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory) -> None:
    server = redis_factory(server=server_build, extra_args=RENAMED)
    exporter = exporter_factory(exporter_for([
        {"name": "renamed", "url": server.url,
         "commands": {"client": "MYCLIENT", "config": "MYCONFIG"}}]))

    def grouped(text: str) -> bool:
        return value(text, "redis_client_connections", target="renamed", name=CLIENT_NAME,
                     client_type="normal") == 1

    wait_until(exporter, "renamed", grouped, "the exporter's own group")
    text = wait_polls(exporter, "renamed", 2)

    assert value(text, "redis_up", target="renamed") == 1
    for name in ("client_list", "config", "client_setname"):
        assert capability(text, "renamed", name) == 1, (name, describe(text, "renamed"))
    assert capability(text, "renamed", "client_no_evict") == (
        1 if server_build.no_evict else None)
    assert not [val for _, val in values(text, ERRORS, target="renamed") if val]
    [line] = exporter_lines(server.port, "MYCLIENT")
    assert line["name"] == CLIENT_NAME
    assert ("e" in line["flags"]) == server_build.no_evict  # MYCLIENT NO-EVICT on (7.0+)
    assert value(text, CREATED, target="renamed") == 1


def test_renamed_commands_without_the_setting_degrade_to_info(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server = redis_factory(server=server_build, extra_args=RENAMED)
    healthy = redis_factory()
    exporter = exporter_factory(exporter_for([
        {"name": "renamed", "url": server.url},
        {"name": "healthy", "url": healthy.url}]))

    def degraded(text: str) -> bool:
        return (capability(text, "renamed", "client_list") == 0
                and capability(text, "renamed", "config") == 0)

    wait_until(exporter, "renamed", degraded, "client_list and config 0")
    text = wait_polls(exporter, "renamed", 2)

    assert value(text, "redis_up", target="renamed") == 1
    assert value(text, "redis_connected_clients", target="renamed") is not None
    assert value(text, "redis_max_clients", target="renamed") == (
        1000 if server_build.maxclients_in_info else None)  # from INFO (6.2+): CONFIG is gone
    for name in ("client_list", "config", "client_setname"):
        assert capability(text, "renamed", name) == 0, (name, describe(text, "renamed"))
    assert capability(text, "renamed", "client_no_evict") == (
        0 if server_build.no_evict else None)
    # One error per capability that went missing, however many polls ran since.
    assert errors(text, "renamed", "info", "unsupported") == 1  # CONFIG GET
    assert errors(text, "renamed", "client_list", "unsupported") == 1
    assert not [lab for lab, val in values(text, ERRORS, target="renamed")
                if lab["kind"] != "unsupported" and val]
    assert not values(text, "redis_client_connections", target="renamed")
    assert value(text, "redis_client_idle_seconds_count", target="renamed") is None
    # It gave up the name once and kept its unnamed connection: one reconnect, no more.
    assert value(text, CREATED, target="renamed") == 2
    [line] = exporter_lines(server.port, "MYCLIENT")
    assert line["name"] == ""
    for name in ("client_setname", "client_list", "config"):
        assert logged(caplog, "capability missing", target="renamed", capability=name) == 1
    # The healthy target next to it has everything.
    assert value(text, "redis_up", target="healthy") == 1
    for name in ("client_list", "config", "client_setname"):
        assert capability(text, "healthy", name) == 1
    assert value(text, "redis_client_connections", target="healthy", name=CLIENT_NAME,
                 client_type="normal") == 1


# -- 3. ACL user without +client ----------------------------------------------------------------
@pytest.mark.server_needs("acl")
def test_acl_user_without_client_holds_one_unnamed_connection(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # tests/test_faults.py checks the metrics of this case; here: what Redis sees, and that
    # the exporter settles on one unnamed connection instead of retrying SETNAME.
    caplog.set_level(logging.INFO)
    server = redis_factory(server=server_build)
    admin = RawClient(server.port)
    try:
        assert admin.call("ACL", "SETUSER", "monitor", "on", ">monpass", "~*", "+@all",
                          "-client") == b"+OK"
    finally:
        admin.close()
    secret = tmp_path / "monitor"
    secret.write_text("monpass\n", encoding="utf-8")
    exporter = exporter_factory(exporter_for([
        {"name": "noclient", "url": server.url, "username": "monitor",
         "password_file": str(secret)}]))
    wait_until(exporter, "noclient",
               lambda text: capability(text, "noclient", "client_setname") == 0,
               "client_setname 0")
    text = wait_polls(exporter, "noclient", 3)

    assert value(text, "redis_up", target="noclient") == 1
    assert value(text, "redis_connected_clients", target="noclient") is not None
    assert capability(text, "noclient", "client_list") == 0
    assert capability(text, "noclient", "client_no_evict") == (
        0 if server_build.no_evict else None)
    assert value(text, CREATED, target="noclient") == 2
    lines = [line for line in exporter_lines(server.port) if line.get("user") == "monitor"]
    assert [line["name"] for line in lines] == [""]
    assert logged(caplog, "capability missing", target="noclient",
                  capability="client_setname") == 1


# -- 4. BUSY script -----------------------------------------------------------------------------
@contextlib.contextmanager
def busy_script(port: int) -> Iterator[RawClient]:
    """An endless Lua script, killed with SCRIPT KILL on the way out whatever happens."""
    runner = RawClient(port, timeout=10)
    runner.send("EVAL", "local i=0 while true do i=i+1 end", 0)
    try:
        yield runner
    finally:
        killer = RawClient(port)
        try:
            killer.call("SCRIPT", "KILL")  # +OK, or -NOTBUSY if it is already gone
        finally:
            killer.close()
        with contextlib.suppress(OSError, ConnectionError):
            runner.read_reply()  # -ERR Script killed by user...
        runner.close()


def test_busy_script_takes_only_its_target_down_and_it_recovers(
        server_build: ServerBuild, redis_factory: RedisFactory,
        exporter_factory: ExporterFactory) -> None:
    server = redis_factory(server=server_build, extra_args=[f"--{server_build.busy_option}",
                                                             "100"])
    healthy = redis_factory()
    exporter = exporter_factory(exporter_for(
        [{"name": "busy", "url": server.url}, {"name": "healthy", "url": healthy.url}],
        FAST_PROBE))
    wait_until(exporter, "busy", lambda text: (value(text, "redis_up", target="busy") == 1
                                               and value(text, PROBE, target="busy") == 1
                                               and value(text, "redis_up", target="healthy")
                                               == 1), "both targets up")
    with busy_script(server.port):
        probe = RawClient(server.port)
        try:
            assert probe.call("PING").startswith(b"-BUSY")  # the script really blocks Redis
        finally:
            probe.close()

        def down(text: str) -> bool:
            return (value(text, "redis_up", target="busy") == 0
                    and errors(text, "busy", "info", "busy") >= 2
                    and errors(text, "busy", "probe", "busy") >= 1)

        before = value(scrape(exporter), LAST_SUCCESS, target="healthy", step="info")
        text = wait_until(exporter, "busy", down, "redis_up 0 with kind busy")
        assert value(text, "redis_connected_clients", target="busy") is None  # not stale
        assert value(text, PROBE, target="busy") == 0
        assert not [lab for lab, val in values(text, ERRORS, target="busy")
                    if lab["kind"] != "busy" and val], describe(text, "busy")
        # The healthy target keeps being polled while the script blocks the other one (its
        # next poll may come a moment after the busy target's second error).
        assert value(text, "redis_up", target="healthy") == 1
        assert before is not None
        text = wait_until(exporter, "healthy", lambda text: (
            value(text, LAST_SUCCESS, target="healthy", step="info") or 0) > before
            and value(text, "redis_up", target="busy") == 0,
            "a healthy poll while the busy target is down", timeout=3)
        assert value(text, "redis_connected_clients", target="healthy") is not None
    recovered = wait_until(exporter, "busy",
                           lambda text: value(text, "redis_up", target="busy") == 1,
                           "recovery after SCRIPT KILL", timeout=5)
    assert value(recovered, "redis_connected_clients", target="busy") is not None


# -- 5. LOADING ---------------------------------------------------------------------------------
KEYS = 40_000
KEY_LOAD_DELAY_US = 100  # at least 4 s of LOADING, ~7 s measured on 2 vCPUs


def test_loading_server_is_reported_by_the_probe_and_recovers(
        redis_factory: RedisFactory, exporter_factory: ExporterFactory) -> None:
    server = redis_factory(extra_args=["--enable-debug-command", "local"])
    admin = RawClient(server.port)
    try:
        assert admin.call("DEBUG", "POPULATE", KEYS) == b"+OK"
        assert admin.call("SAVE") == b"+OK"
    finally:
        admin.close()
    exporter = exporter_factory(exporter_for([{"name": "loading", "url": server.url}],
                                             FAST_PROBE))
    wait_until(exporter, "loading", lambda text: value(text, PROBE, target="loading") == 1
               and value(text, "redis_up", target="loading") == 1, "target up")
    server.stop()
    # Same port and dir: it loads the RDB just saved, sleeping per key, with events served
    # every KiB so that clients get answers (LOADING or not) while it loads.
    restarted = redis_factory(port=server.port, workdir=server.workdir, extra_args=[
        "--key-load-delay", str(KEY_LOAD_DELAY_US),
        "--loading-process-events-interval-bytes", "1024"])
    watcher = RawClient(restarted.port)
    try:
        assert info_field(watcher, "persistence", "loading") == "1"
        assert watcher.call("PING").startswith(b"-LOADING")

        def loading(text: str) -> bool:
            return (errors(text, "loading", "probe", "loading") >= 1
                    and value(text, PROBE, target="loading") == 0
                    and value(text, "redis_up", target="loading") == 1
                    and value(text, "redis_loading", target="loading") == 1)

        text = wait_until(exporter, "loading", loading, "probe kind loading")
        # INFO, CONFIG GET, CLIENT SETNAME and CLIENT LIST are served while loading: the held
        # connection keeps redis_up 1 (the contract: the last INFO succeeded). A new client's
        # first real command is refused: that is what the probe reports.
        assert info_field(watcher, "persistence", "loading") == "1", "loaded too soon"
        assert value(text, "redis_connected_clients", target="loading") is not None
        wait_for(lambda: info_field(watcher, "persistence", "loading") == "0", timeout=WAIT,
                 message="the RDB loaded")
    finally:
        watcher.close()
    text = wait_until(exporter, "loading", lambda text: value(text, PROBE, target="loading") == 1
                      and value(text, "redis_loading", target="loading") == 0,
                      "probe success after loading", timeout=5)
    assert value(text, "redis_up", target="loading") == 1
    assert value(text, "redis_client_connections", target="loading", name=CLIENT_NAME,
                 client_type="normal") == 1
