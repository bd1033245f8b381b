"""Configuration file: every key, every failure mode with its key path, secrets, defaults merging,
durations and target URLs (DESIGN.md "Configuration file (YAML)" and "Command line")."""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from exporter import cli
from exporter.config.durations import parse_duration
from exporter.config.loader import ConfigError, build_config, load_config_file
from exporter.config.model import (
    DEFAULT_NAME_REWRITE,
    BackoffConfig,
    Buckets,
    ClientListConfig,
    CommandNames,
    Config,
    Endpoint,
    PollConfig,
    ProbeConfig,
    TargetConfig,
    TLSConfig,
)
from exporter.config.secret import Secret
from exporter.config.targets import parse_target_url
from tests.support.tls import make_pki

CONFIG_DATA = Path(__file__).parent / "data" / "config"
INVALID = CONFIG_DATA / "invalid"
PASSWORD = "hunter2-secret"


# --------------------------------------------------------------------------------------------
# helpers and fixtures




def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config_file(str(write(tmp_path, text)), env=env or {})


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_config(yaml.safe_load(text), env=env or {})
    return caught.value.problems


def target(config: Config, name: str) -> TargetConfig:
    matches = [item for item in config.targets if item.name == name]
    assert len(matches) == 1, [item.name for item in config.targets]
    return matches[0]


def secret_value(secret: Secret | None) -> str:
    assert secret is not None
    return secret.reveal()


class _NoBindSocket(socket.socket):
    """Stands in for socket.socket while `--check-config` runs: binding is a test failure."""

    attempts: ClassVar[list[object]] = []  # every forbidden bind, for the fixture to check

    def bind(self, address: object, /) -> None:
        _NoBindSocket.attempts.append(address)
        raise AssertionError(f"--check-config tried to bind {address!r}")


@pytest.fixture
def held_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port this test holds bound and listening; afterwards any new bind is a failure."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port: int = holder.getsockname()[1]
    _NoBindSocket.attempts.clear()
    monkeypatch.setattr(socket, "socket", _NoBindSocket)

    def no_run(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("--check-config must never start the exporter")

    monkeypatch.setattr(cli, "run", no_run)
    try:
        yield port
    finally:
        holder.close()
    assert _NoBindSocket.attempts == []


def check_config(path: Path | str, port: int, env: dict[str, str] | None = None) -> int:
    argv = ["--config.file", str(path), "--check-config",
            "--web.listen-address", f"127.0.0.1:{port}"]
    try:
        return cli.main(argv, env=env or {})
    except SystemExit as stop:  # argparse exits rather than returning
        return stop.code if isinstance(stop.code, int) else 1


# --------------------------------------------------------------------------------------------
# a valid file with every key set


def _tls_files(directory: Path) -> None:
    """Real PEM files (ca.pem, client.pem, client.key): the loader loads TLS files."""
    pki = make_pki(directory / "pki")
    shutil.copy(pki.ca.cert, directory / "ca.pem")
    shutil.copy(pki.client.cert, directory / "client.pem")
    shutil.copy(pki.client.key, directory / "client.key")


def _full_config_dir(tmp_path: Path) -> Path:
    (tmp_path / "default-password").write_text("default-pw\n", encoding="utf-8")
    (tmp_path / "sessions-password").write_text(PASSWORD + "\n", encoding="utf-8")
    _tls_files(tmp_path)
    template = (CONFIG_DATA / "valid-full.yaml").read_text(encoding="utf-8")
    return write(tmp_path, template.replace("__DIR__", str(tmp_path)), "valid-full.yaml")


def test_valid_full_file_sets_every_key(tmp_path: Path) -> None:
    path = _full_config_dir(tmp_path)
    config = load_config_file(str(path), env={"LOCAL_REDIS_PASSWORD": "local-pw"})

    assert config.poll == PollConfig(interval=30.0, client_list_interval=60.0, timeout=10.0,
                                     concurrency=4)
    client_list = config.client_list
    assert client_list.group_by == ("user", "db", "lib_name", "lib_ver", "cmd", "addr_host",
                                    "resp")
    assert client_list.max_groups == 7
    assert [(rule.match.pattern, rule.replace) for rule in client_list.name_rewrite] == [
        ("(.+?)-canary", r"\1")
    ]
    assert client_list.idle_threshold == 300.0
    assert client_list.backoff == BackoffConfig(above_clients=100, interval=600.0)
    assert client_list.buckets.idle_seconds == (0.5, 2.0, 30.0)
    assert client_list.buckets.age_seconds == (1.0, 100.0, 10000.0)
    assert client_list.buckets.memory_bytes == Buckets().memory_bytes  # not set: default

    assert [item.name for item in config.targets] == ["cache", "sessions", "local"]
    default_tls = TLSConfig(ca_file=f"{tmp_path}/ca.pem", cert_file=f"{tmp_path}/client.pem",
                            key_file=f"{tmp_path}/client.key", server_name="redis.internal",
                            insecure_skip_verify=True)

    cache = target(config, "cache")  # everything inherited from defaults
    assert cache.endpoint == Endpoint("redis", host="cache.internal", port=6380, db=2)
    assert cache.username == "monitor"
    assert cache.password_file == f"{tmp_path}/default-password"
    assert secret_value(cache.password) == "default-pw"
    assert cache.tls == default_tls
    assert cache.max_clients == 1000
    assert cache.commands == CommandNames(client="RENAMED_CLIENT", config="RENAMED_CONFIG")
    assert cache.connect_probe == ProbeConfig(enabled=False, interval=120.0)

    sessions = target(config, "sessions")  # single nested keys overridden
    assert sessions.endpoint == Endpoint("rediss", host="sessions.internal", port=6381)
    assert sessions.username == "exporter"
    assert sessions.password_file == f"{tmp_path}/sessions-password"
    assert secret_value(sessions.password) == PASSWORD
    assert sessions.tls == dataclasses.replace(default_tls, server_name="sessions.internal")
    assert sessions.max_clients == 50
    assert sessions.commands == CommandNames(client="RENAMED_CLIENT", config="CFG")
    assert sessions.connect_probe == ProbeConfig(enabled=False, interval=30.0)

    local = target(config, "local")  # password_env replaces the default password_file
    assert local.endpoint == Endpoint("unix", path="/run/redis/redis.sock", db=3)
    assert local.password_env == "LOCAL_REDIS_PASSWORD"
    assert local.password_file is None
    assert secret_value(local.password) == "local-pw"


def test_valid_full_file_passes_check_config(tmp_path: Path, held_port: int,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _full_config_dir(tmp_path)
    assert check_config(path, held_port, env={"LOCAL_REDIS_PASSWORD": "local-pw"}) == 0
    out, err = capsys.readouterr()
    assert "3 target(s)" in out
    assert "error" not in err.lower()
    assert PASSWORD not in out + err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_is_the_embedded_default(tmp_path: Path, text: str) -> None:
    config = load_text(tmp_path, text)
    assert config.poll == PollConfig()
    assert config.client_list == ClientListConfig()
    assert config.client_list.name_rewrite == DEFAULT_NAME_REWRITE
    assert len(config.targets) == 1
    only = config.targets[0]
    assert only.name == "localhost:6379"
    assert only.endpoint == Endpoint("redis", host="localhost", port=6379)
    assert only.password is None


def test_design_example_is_valid_and_matches_the_defaults(tmp_path: Path) -> None:
    """DESIGN.md's example, minus the password file, states exactly the defaults."""
    config = load_text(tmp_path, r"""
poll: {interval: 15s, client_list_interval: 15s, timeout: 5s, concurrency: 16}
defaults:
  username: null
  password_file: null
  tls: {ca_file: null, cert_file: null, key_file: null, server_name: null,
        insecure_skip_verify: false}
  max_clients: null
  commands: {client: CLIENT, config: CONFIG}
  connect_probe: {enabled: true, interval: 60s}
client_list:
  group_by: [name, client_type]
  max_groups: 50
  name_rewrite:
    - {match: '(.+?)-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}',
       replace: '\1'}
    - {match: '(.+?)[-_.@][0-9a-f]{8,}', replace: '\1'}
  idle_threshold: 60s
  backoff: {above_clients: 5000, interval: 5m}
  buckets:
    idle_seconds: [1, 5, 15, 60, 300, 900, 3600, 86400]
    age_seconds:  [10, 60, 300, 1800, 3600, 21600, 86400, 604800]
targets:
  - name: cache
    url: redis://localhost:6379/0
""")
    assert config.poll == PollConfig()
    assert config.client_list.group_by == ClientListConfig().group_by
    assert config.client_list.buckets == Buckets()
    assert config.client_list.backoff == BackoffConfig()
    assert [(r.match.pattern, r.replace) for r in config.client_list.name_rewrite] == [
        (r.match.pattern, r.replace) for r in DEFAULT_NAME_REWRITE
    ]
    assert config.targets == (TargetConfig(name="cache",
                                           endpoint=Endpoint("redis", host="localhost")),)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_text(tmp_path, "targets: [{name: a, url: 'redis://a'}]")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.poll.interval = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.targets[0].endpoint.port = 1  # type: ignore[misc]


def test_backoff_can_be_disabled(tmp_path: Path) -> None:
    config = load_text(tmp_path, "client_list: {backoff: {above_clients: null}}")
    assert config.client_list.backoff.above_clients is None


def test_name_rewrite_null_means_no_rules(tmp_path: Path) -> None:
    assert load_text(tmp_path, "client_list: {name_rewrite: null}").client_list.name_rewrite \
        == ()


# --------------------------------------------------------------------------------------------
# one invalid file per failure mode: exact key path, clear message, exit 2, all reported

INVALID_CASES: list[tuple[str, str, str]] = [
    # (file, exact key path before ": ", a fragment of the message)
    ("unknown-key.yaml", "scrape_interval", "unknown key"),
    ("wrong-type-interval.yaml", "poll.interval", "must be a duration such as 15s"),
    ("bad-duration.yaml", "poll.interval", "not a duration: '15 seconds'"),
    ("bad-url-scheme.yaml", "targets[1].url", "scheme must be redis, rediss or unix"),
    ("password-in-url.yaml", "targets[0].url", "must not contain a password"),
    ("user-in-url.yaml", "targets[0].url", "must not contain a user name"),
    ("duplicate-target-name.yaml", "targets[1].name",
     "duplicate target name 'cache' (first at targets[0])"),
    ("missing-password-file.yaml", "targets[0].password_file",
     "file not found: /nonexistent/secret"),
    ("password-env-unset.yaml", "targets[0].password_env",
     "REDIS_CONNECTION_EXPORTER_TEST_UNSET_PASSWORD is not set"),
    ("password-key-in-yaml.yaml", "targets[0].password", "use password_file or password_env"),
    ("both-password-sources.yaml", "defaults", "password_file or password_env, not both"),
    ("bad-group-by.yaml", "client_list.group_by[1]", "must be one of name, client_type"),
    ("group-by-duplicate.yaml", "client_list.group_by[1]", "name is listed twice"),
    ("bad-regex.yaml", "client_list.name_rewrite[0].match", "invalid regular expression"),
    ("bad-replace-group.yaml", "client_list.name_rewrite[1].replace",
     "invalid group reference 2"),
    ("max-groups-zero.yaml", "client_list.max_groups", "must be at least 1"),
    ("buckets-not-increasing.yaml", "client_list.buckets.idle_seconds",
     "must be strictly increasing"),
    ("concurrency-not-int.yaml", "poll.concurrency", "must be an integer"),
    ("timeout-longer-than-interval.yaml", "poll.timeout",
     "must not be longer than poll.interval"),
    ("client-list-interval-shorter.yaml", "poll.client_list_interval",
     "must not be shorter than poll.interval"),
    ("empty-targets.yaml", "targets", "must be a non-empty list"),
    ("target-not-mapping.yaml", "targets[0]", "must be a mapping"),
    ("missing-url.yaml", "targets[0].url", "is required"),
    ("bad-port.yaml", "targets[0].url", "port must be a number from 1 to 65535"),
    ("bad-db.yaml", "targets[0].url", "database must be a number"),
    ("tls-ca-missing.yaml", "defaults.tls.ca_file", "file not found: /nonexistent/ca.pem"),
    ("unknown-nested-key.yaml", "defaults.tls.bogus", "unknown key (known: ca_file"),
    ("yaml-syntax-error.yaml", str(INVALID / "yaml-syntax-error.yaml"), "(line 3, column 2)"),
    ("top-level-not-mapping.yaml", "(top level)", "must be a mapping"),
    ("commands-with-space.yaml", "defaults.commands.client", "must be one word"),
    ("probe-bad-interval.yaml", "defaults.connect_probe.interval", "not a duration: 'soon'"),
    ("source-url-and-cluster.yaml", "targets[0]",
     "has url and cluster: give exactly one of url, cluster or sentinel"),
    ("cluster-empty-seeds.yaml", "targets[0].cluster.seeds",
     "must be a non-empty list of redis:// or rediss:// URLs"),
    ("cluster-bad-address.yaml", "targets[0].cluster.address",
     "must be one of endpoint, ip, hostname"),
    ("cluster-seed-unix.yaml", "targets[0].cluster.seeds[1]",
     "must be a redis:// or rediss:// URL"),
    ("cluster-seeds-mixed-schemes.yaml", "targets[0].cluster.seeds",
     "mixes redis:// and rediss://"),
    ("cluster-seed-password.yaml", "targets[0].cluster.seeds[0]",
     "must not contain a password"),
    ("cluster-unknown-key.yaml", "targets[0].cluster.refresh_interval",
     "unknown key (known: seeds, refresh, address)"),
    ("sentinel-masters-not-list.yaml", "targets[0].sentinel.masters",
     "must be a non-empty list of master names"),
    ("sentinel-username-without-password.yaml", "targets[0].sentinel.username",
     "needs password_file or password_env"),
    ("sentinel-password-key.yaml", "targets[0].sentinel.password",
     "use password_file or password_env"),
    ("source-name-with-slash.yaml", "targets[0].name", "must not contain /"),
]

# every problem in multiple-problems.yaml, by key path
MULTIPLE_PATHS = {
    "poll.interval",
    "poll.concurrency",
    "client_list.group_by[1]",
    "client_list.max_groups",
    "targets[0].url",
    "targets[1].name",
    "targets[1].tls.bogus",
}


def test_every_invalid_file_has_a_case() -> None:
    files = {path.name for path in INVALID.glob("*.yaml")}
    assert files == {name for name, _, _ in INVALID_CASES} | {"multiple-problems.yaml"}


def _load_problems(name: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_file(str(INVALID / name), env={})
    problems = caught.value.problems
    assert problems, "ConfigError without problems"
    assert str(caught.value) == "\n".join(problems)
    return problems


@pytest.mark.parametrize(("name", "key_path", "fragment"), INVALID_CASES,
                         ids=[case[0] for case in INVALID_CASES])
def test_invalid_file_names_the_key_path(name: str, key_path: str, fragment: str) -> None:
    problems = _load_problems(name)
    matching = [p for p in problems if p.startswith(f"{key_path}: ")]
    assert matching, f"no problem at {key_path!r}: {problems}"
    assert any(fragment in p for p in matching), problems
    for problem in problems:
        path, sep, message = problem.partition(": ")
        assert sep and path and message.strip(), f"not 'key.path: message': {problem!r}"
        assert "Traceback" not in problem
        assert PASSWORD not in problem


@pytest.mark.parametrize("name", [case[0] for case in INVALID_CASES]
                         + ["multiple-problems.yaml"])
def test_check_config_exits_2_and_prints_every_problem(
    name: str, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_file(str(INVALID / name), env={})
    assert check_config(INVALID / name, held_port) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    for problem in caught.value.problems:
        assert problem in err
    assert len(err.strip().splitlines()) == len(caught.value.problems)
    assert PASSWORD not in out + err
    assert "config OK" not in out


def test_multiple_problems_are_reported_at_once() -> None:
    problems = _load_problems("multiple-problems.yaml")
    paths = {problem.partition(": ")[0] for problem in problems}
    assert paths == MULTIPLE_PATHS, problems
    assert len(problems) == len(MULTIPLE_PATHS)


def test_unreadable_file_is_a_config_error(tmp_path: Path, held_port: int,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config_file(str(missing), env={})
    assert caught.value.problems == [f"{missing}: cannot read: No such file or directory"]
    assert check_config(missing, held_port) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_check_config_ok_for_a_valid_file_while_the_port_is_taken(
    tmp_path: Path, held_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "targets: [{name: a, url: 'redis://127.0.0.1:1'}]\n")
    assert check_config(path, held_port) == 0
    out, err = capsys.readouterr()
    assert "config OK: 1 target(s)" in out
    assert "error" not in err.lower()


@pytest.mark.parametrize(("text", "key_path", "fragment"), [
    ("targets: [{name: a, url: 'redis://a', bogus: 1}]", "targets[0].bogus", "unknown key"),
    ("defaults: {name: x}", "defaults.name", "unknown key"),
    ("poll: [15s]", "poll", "must be a mapping"),
    ("poll: {interval: 0s}", "poll.interval", "longer than 0s"),
    ("poll: {concurrency: 1.5}", "poll.concurrency", "must be an integer"),
    ("poll: {concurrency: true}", "poll.concurrency", "must be an integer"),
    ("client_list: {group_by: []}", "client_list.group_by", "non-empty list"),
    ("client_list: {group_by: name}", "client_list.group_by", "non-empty list"),
    ("client_list: {name_rewrite: {match: a, replace: b}}", "client_list.name_rewrite",
     "must be a list"),
    ("client_list: {name_rewrite: [{match: '(a)'}]}", "client_list.name_rewrite[0].replace",
     "is required"),
    ("client_list: {lib_name_rewrite: [{match: '(a', replace: x}]}",
     "client_list.lib_name_rewrite[0].match", "invalid regular expression"),
    ("client_list: {lib_name_rewrite: [{match: 'a', replace: '\\2'}]}",
     "client_list.lib_name_rewrite[0].replace", "invalid replacement"),
    ("client_list: {group_by: [io-thread]}", "client_list.group_by[0]", "must be one of"),
    ("client_list: {buckets: {idle_seconds: [1, x]}}", "client_list.buckets.idle_seconds",
     "list of numbers"),
    ("client_list: {buckets: {idle_seconds: []}}", "client_list.buckets.idle_seconds",
     "list of numbers"),
    ("client_list: {buckets: {bogus_seconds: [1]}}", "client_list.buckets.bogus_seconds",
     "unknown key"),
    ("client_list: {backoff: {interval: 5}}", "client_list.backoff.interval", "duration"),
    ("defaults: {max_clients: 0}", "defaults.max_clients", "at least 1"),
    ("defaults: {tls: {insecure_skip_verify: 'yes please'}}",
     "defaults.tls.insecure_skip_verify", "true or false"),
    ("defaults: {connect_probe: {enabled: 1}}", "defaults.connect_probe.enabled",
     "true or false"),
    ("defaults: {commands: {client: ''}}", "defaults.commands.client", "one word"),
    ("defaults: {username: 5}", "defaults.username", "must be a string"),
    ("targets: [{name: '', url: 'redis://a'}]", "targets[0].name", "must not be empty"),
    ("targets: [{url: 'redis://a'}]", "targets[0].name", "is required"),
    ("targets: [{name: a, url: 'redis://a?timeout=1'}]", "targets[0].url",
     "unsupported URL parameter: timeout"),
    ("targets: [{name: a, url: 'unix://'}]", "targets[0].url", "needs a socket path"),
    ("targets: [{name: a, url: 'redis://:6379'}]", "targets[0].url", "needs a host"),
    ("targets: [{name: a, url: 'localhost:6379'}]", "targets[0].url", "scheme must be"),
    ("targets: {name: a, url: 'redis://a'}", "targets", "non-empty list"),
])
def test_more_invalid_documents(text: str, key_path: str, fragment: str) -> None:
    problems = problems_of(text)
    assert any(p.startswith(f"{key_path}: ") and fragment in p for p in problems), problems


def test_port_zero_is_rejected() -> None:
    """`redis://host:0` must be an error, not silently port 6379 (urlsplit gives port 0)."""
    problems = problems_of("targets: [{name: a, url: 'redis://localhost:0'}]")
    assert problems == ["targets[0].url: port must be a number from 1 to 65535"]


def test_setting_only_poll_interval_is_valid(tmp_path: Path) -> None:
    """client_list_interval is documented as "may be slower" than interval; when it is not set
    it must follow poll.interval rather than reject `poll: {interval: 1m}` with a problem about
    a key the user never wrote."""
    config = load_text(tmp_path, "poll: {interval: 1m}\n")
    assert config.poll.interval == 60.0
    assert config.poll.client_list_interval >= config.poll.interval


@pytest.mark.parametrize(("text", "timeout"), [
    ("poll: {interval: 2s}\n", 2.0),          # shorter than the 5 s default: the interval
    ("poll: {interval: 1m}\n", 5.0),          # longer: the default
    ("poll: {interval: 2s, timeout: 1s}\n", 1.0),
])
def test_an_unset_poll_timeout_follows_a_shorter_interval(tmp_path: Path, text: str,
                                                           timeout: float) -> None:
    """As Prometheus sets an unset scrape_timeout: `interval: 2s` alone must not be refused
    with a problem about poll.timeout, a key the user never wrote."""
    assert load_text(tmp_path, text).poll.timeout == timeout


def test_an_explicit_poll_timeout_longer_than_the_interval_stays_an_error() -> None:
    assert problems_of("poll: {interval: 2s, timeout: 3s}\n") == [
        "poll.timeout: must not be longer than poll.interval"]


# --------------------------------------------------------------------------------------------
# secrets


def test_password_file_is_a_secret_with_the_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n", encoding="utf-8")
    (tmp_path / "pw-crlf").write_text(PASSWORD + "\r\n", encoding="utf-8")
    config = load_text(tmp_path, f"""
targets:
  - {{name: a, url: 'redis://a', password_file: '{tmp_path}/pw'}}
  - {{name: b, url: 'redis://b', password_file: '{tmp_path}/pw-crlf'}}
""")
    for item in config.targets:
        assert isinstance(item.password, Secret)
        assert item.password.reveal() == PASSWORD
        assert PASSWORD not in repr(item.password)
        assert PASSWORD not in str(item.password)
        assert PASSWORD not in f"{item.password}"
        assert PASSWORD not in repr(item)
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)


def test_password_without_newline_is_kept_whole(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(" pass word ", encoding="utf-8")
    config = load_text(tmp_path, f"defaults: {{password_file: '{tmp_path}/pw'}}")
    assert secret_value(config.targets[0].password) == " pass word "


def test_password_env_is_a_secret(tmp_path: Path) -> None:
    config = load_text(tmp_path, """
defaults: {password_env: REDIS_PW}
targets: [{name: a, url: 'redis://a'}]
""", env={"REDIS_PW": PASSWORD})
    only = config.targets[0]
    assert isinstance(only.password, Secret)
    assert only.password.reveal() == PASSWORD
    assert only.password_env == "REDIS_PW"
    assert PASSWORD not in repr(only.password) + str(only.password)
    assert PASSWORD not in repr(config)


@pytest.mark.parametrize("url", [
    f"redis://:{PASSWORD}@localhost:6379",
    f"redis://user:{PASSWORD}@localhost:6379",
    f"rediss://user:{PASSWORD}@localhost:badport",
    f"http://:{PASSWORD}@localhost",
    f"unix://:{PASSWORD}@/run/redis.sock",
])
def test_password_in_url_is_never_echoed(url: str, held_port: int, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    text = f"targets: [{{name: a, url: '{url}'}}]\n"
    problems = problems_of(text)
    assert [p.partition(": ")[0] for p in problems] == ["targets[0].url"]
    assert all(PASSWORD not in p for p in problems)
    assert check_config(write(tmp_path, text), held_port) == 2
    out, err = capsys.readouterr()
    assert "targets[0].url" in err
    assert PASSWORD not in out + err


def test_password_key_in_yaml_is_never_echoed(held_port: int,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(INVALID / "password-key-in-yaml.yaml", held_port) == 2
    out, err = capsys.readouterr()
    assert "targets[0].password:" in err
    assert PASSWORD not in out + err


def test_secret_type() -> None:
    secret = Secret(PASSWORD)
    assert secret.reveal() == PASSWORD
    assert PASSWORD not in repr(secret) + str(secret) + f"{secret!r}{secret!s}{secret}"
    assert secret.scrub(f"AUTH failed for {PASSWORD}") == "AUTH failed for ***"
    assert Secret("").scrub("unchanged") == "unchanged"
    assert secret == Secret(PASSWORD)
    assert secret != Secret("other")


# --------------------------------------------------------------------------------------------
# defaults merging


def test_target_inherits_every_default(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("default-pw\n", encoding="utf-8")
    _tls_files(tmp_path)
    config = load_text(tmp_path, f"""
defaults:
  username: monitor
  password_file: {tmp_path}/pw
  tls: {{ca_file: {tmp_path}/ca.pem, insecure_skip_verify: true}}
  max_clients: 10000
  commands: {{client: C1}}
  connect_probe: {{enabled: false}}
targets:
  - {{name: a, url: 'rediss://a'}}
""")
    only = config.targets[0]
    assert only.username == "monitor"
    assert only.password_file == f"{tmp_path}/pw"
    assert secret_value(only.password) == "default-pw"
    assert only.tls == TLSConfig(ca_file=f"{tmp_path}/ca.pem", insecure_skip_verify=True)
    assert only.max_clients == 10000
    assert only.commands == CommandNames(client="C1", config="CONFIG")
    assert only.connect_probe == ProbeConfig(enabled=False, interval=60.0)


def test_target_overrides_single_nested_keys(tmp_path: Path) -> None:
    _tls_files(tmp_path)
    config = load_text(tmp_path, f"""
defaults:
  tls: {{ca_file: {tmp_path}/ca.pem}}
  commands: {{client: C1, config: K1}}
  connect_probe: {{enabled: false, interval: 2m}}
targets:
  - name: a
    url: rediss://a
    tls: {{server_name: a.internal}}
    commands: {{config: K2}}
    connect_probe: {{interval: 10s}}
  - {{name: b, url: 'rediss://b'}}
""")
    a, b = config.targets
    assert a.tls == TLSConfig(ca_file=f"{tmp_path}/ca.pem", server_name="a.internal")
    assert a.commands == CommandNames(client="C1", config="K2")
    assert a.connect_probe == ProbeConfig(enabled=False, interval=10.0)
    # the other target still sees the untouched defaults
    assert b.tls == TLSConfig(ca_file=f"{tmp_path}/ca.pem")
    assert b.commands == CommandNames(client="C1", config="K1")
    assert b.connect_probe == ProbeConfig(enabled=False, interval=120.0)


def test_target_password_source_replaces_the_default_one(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("default-pw\n", encoding="utf-8")
    config = load_text(tmp_path, f"""
defaults: {{username: monitor, password_file: {tmp_path}/pw, max_clients: 100}}
targets:
  - {{name: env, url: 'redis://a', password_env: PW}}
  - {{name: none, url: 'redis://b', password_file: null, username: null, max_clients: null}}
""", env={"PW": PASSWORD})
    env_target = target(config, "env")
    assert env_target.password_file is None
    assert env_target.password_env == "PW"
    assert secret_value(env_target.password) == PASSWORD
    assert env_target.username == "monitor"
    none = target(config, "none")
    assert none.password is None
    assert none.password_file is None
    assert none.username is None
    assert none.max_clients is None


def test_problems_in_defaults_are_reported_once(tmp_path: Path) -> None:
    problems = problems_of("""
defaults: {password_file: /nonexistent/secret}
targets: [{name: a, url: 'redis://a'}, {name: b, url: 'redis://b'}]
""")
    assert problems == ["defaults.password_file: file not found: /nonexistent/secret"]


# --------------------------------------------------------------------------------------------
# durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("15s", 15.0),
    ("1m", 60.0),
    ("1h30m", 5400.0),
    ("500ms", 0.5),
    ("2d", 172800.0),
    ("1w", 604800.0),
    ("1m30s", 90.0),
    ("1s500ms", 1.5),
    ("0s", 0.0),
])
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["15", "1.5s", "s", "-1s", "1m1h", "", " 15s", "15s ",
                                  "15S", "1h1h", "15sec", "ms"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration") as caught:
        parse_duration(text)
    assert "15s" in str(caught.value)  # the message shows the expected syntax


# --------------------------------------------------------------------------------------------
# target URLs


@pytest.mark.parametrize(("url", "endpoint", "display"), [
    ("redis://host", Endpoint("redis", host="host", port=6379, db=0), "host:6379"),
    ("redis://host:6380/2", Endpoint("redis", host="host", port=6380, db=2), "host:6380/2"),
    ("redis://host:6379/0", Endpoint("redis", host="host", port=6379, db=0), "host:6379"),
    ("redis://host/?db=4", Endpoint("redis", host="host", port=6379, db=4), "host:6379/4"),
    ("rediss://h:6380", Endpoint("rediss", host="h", port=6380), "h:6380"),
    ("unix:///run/redis.sock", Endpoint("unix", path="/run/redis.sock"), "/run/redis.sock"),
    ("redis://[::1]:6379", Endpoint("redis", host="::1", port=6379), "[::1]:6379"),
    ("redis://[2001:db8::7]:7000/1", Endpoint("redis", host="2001:db8::7", port=7000, db=1),
     "[2001:db8::7]:7000/1"),
    ("REDIS://Cache.Internal:6379", Endpoint("redis", host="cache.internal"),
     "cache.internal:6379"),
])
def test_parse_target_url(url: str, endpoint: Endpoint, display: str) -> None:
    parsed = parse_target_url(url)
    assert parsed == endpoint
    assert parsed.display == display


def test_unix_socket_with_db() -> None:
    parsed = parse_target_url("unix:///run/redis.sock?db=3")
    assert parsed == Endpoint("unix", path="/run/redis.sock", db=3)
    assert parsed.host == ""
    assert parsed.display.startswith("/run/redis.sock")
    # two dbs on one socket must not get the same default target label
    assert parsed.display != parse_target_url("unix:///run/redis.sock").display


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://host:6379", "scheme must be redis, rediss or unix"),
    ("host:6379", "scheme must be"),
    ("redis://host:65536", "port must be a number"),
    ("redis://host:abc", "port must be a number"),
    ("redis://host/abc", "database must be a number"),
    ("redis://host/1/2", "database must be a number"),
    ("unix:///run/redis.sock?db=x", "database must be a number"),
    ("redis://host?foo=1", "unsupported URL parameter: foo"),
    ("redis://user@host", "user name"),
    (f"redis://:{PASSWORD}@host", "password"),
])
def test_parse_target_url_rejects(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as caught:
        parse_target_url(url)
    assert PASSWORD not in str(caught.value)


def test_unloadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, f"""
targets:
  - {{name: a, url: 'rediss://h:6380', tls: {{ca_file: {tmp_path}/ca.pem}}}}
""")
    assert caught.value.problems == [
        "targets[0].tls: cannot load the TLS files: NO_CERTIFICATE_OR_CRL_FOUND"]


def test_username_without_a_password_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, "targets:\n  - {name: a, url: 'redis://h', username: mon}\n")
    assert caught.value.problems[0].startswith("targets[0].username: needs password_file")


@pytest.mark.parametrize("bound", [".inf", ".nan"])
def test_bucket_bounds_must_be_finite(tmp_path: Path, bound: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, f"client_list: {{buckets: {{idle_seconds: [1, {bound}]}}}}\n")
    assert caught.value.problems == [
        "client_list.buckets.idle_seconds: must be finite numbers (+Inf is always added)"]


@pytest.mark.parametrize(("text", "problem"), [
    ("dynamic_targets: {allow: ['bad_host!']}",
     "dynamic_targets.allow[0]: not a CIDR or a host glob"),
    ("dynamic_targets: {allow: '10.0.0.0/8'}",
     "dynamic_targets.allow: must be a list of CIDR[:port] or host-glob[:port] strings"),
    ("dynamic_targets: {allow: ['10.0.0.0/8:99999']}",
     "dynamic_targets.allow[0]: port must be a number from 1 to 65535"),
    ("dynamic_targets: {max_targets: 0}", "dynamic_targets.max_targets: must be at least 1"),
    ("dynamic_targets: {expire_after: soon}", "dynamic_targets.expire_after: not a duration"),
    ("dynamic_targets: {bogus: 1}", "dynamic_targets.bogus: unknown key"),
    ("auth_modules: {prod: {username: exporter}}",
     "auth_modules.prod.targets: is required: the addresses these credentials may be sent to"),
    ("auth_modules: {prod: {targets: ['10.0.0.0/8'], password: x}}",
     "auth_modules.prod.password: passwords are not accepted in the config file"),
    ("auth_modules: [prod]", "auth_modules: must be a mapping of module names to settings"),
])
def test_discovered_target_settings_name_their_key_path(text: str, problem: str) -> None:
    assert any(found.startswith(problem) for found in problems_of(text)), problems_of(text)


def test_cluster_and_sentinel_entries_carry_their_sources_and_the_node_settings(
        tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    nodes.write_text("nodepw\n", encoding="utf-8")
    watchers = tmp_path / "sentinels"
    watchers.write_text("sentinelpw\n", encoding="utf-8")
    config = build_config(yaml.safe_load(f"""
defaults: {{max_clients: 500}}
targets:
  - {{name: cache, url: redis://10.0.0.9:6379}}
  - name: shop
    cluster: {{seeds: [redis://10.0.0.1:6379, redis://10.0.0.2:6380], refresh: 30s,
               address: hostname}}
    username: exporter
    password_file: {nodes}
    tls: {{server_name: "{{host}}"}}
  - name: sessions
    sentinel: {{seeds: [redis://10.0.1.1:26379], masters: [mymaster, other],
                include_sentinels: true, username: watcher, password_file: {watchers}}}
    password_file: {nodes}
"""), env={})
    assert [target.name for target in config.targets] == ["cache"]
    shop, sessions = config.sources
    assert shop.cluster is not None and shop.sentinel is None
    assert [seed.address for seed in shop.cluster.seeds] == ["10.0.0.1:6379", "10.0.0.2:6380"]
    assert (shop.cluster.refresh, shop.cluster.address) == (30.0, "hostname")
    assert (shop.template.source, shop.template.parent) == ("cluster", "shop")
    assert shop.template.username == "exporter"
    assert shop.template.password == Secret("nodepw")
    assert shop.template.max_clients == 500  # defaults apply to every node
    assert shop.template.tls.server_name == "{host}"
    assert sessions.sentinel is not None and sessions.cluster is None
    assert sessions.sentinel.masters == ("mymaster", "other")
    assert sessions.sentinel.refresh == 10.0  # the default
    assert sessions.sentinel.include_sentinels is True
    # The Sentinels' own credentials, apart from the nodes'.
    assert sessions.sentinel.username == "watcher"
    assert sessions.sentinel.password == Secret("sentinelpw")
    assert sessions.template.password == Secret("nodepw")
    assert "sentinelpw" not in repr(config) and "nodepw" not in repr(config)
