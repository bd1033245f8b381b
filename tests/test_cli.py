"""Command line (DESIGN.md "Command line"): --redis.addr targets, credentials flags, environment,
precedence, --version, bad flags. No test here starts a server."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from exporter import __version__, cli
from exporter.config.model import Config, Endpoint, PollConfig

PASSWORD = "hunter2-secret"
ADDR_ENV = "REDIS_CONNECTION_EXPORTER_REDIS_ADDR"




@pytest.fixture(autouse=True)
def _never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_run(*_args: object, **_kwargs: object) -> int:
        raise AssertionError("a CLI test must never start the exporter")

    monkeypatch.setattr(cli, "run", no_run)


def load(argv: Sequence[str], env: dict[str, str] | None = None) -> Config:
    env = env or {}
    args = cli.parse_args(list(argv), env)
    return cli.load(args, env)


def run_main(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    try:
        return cli.main(list(argv), env=env or {})
    except SystemExit as stop:  # argparse exits rather than returning
        return stop.code if isinstance(stop.code, int) else 1


def names(config: Config) -> list[str]:
    return [item.name for item in config.targets]


def file_with_targets(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("""
poll: {interval: 30s, client_list_interval: 30s}
defaults: {max_clients: 77}
targets:
  - {name: from-file, url: 'redis://file-host:6379'}
""", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# --redis.addr


def test_no_arguments_polls_localhost() -> None:
    config = load([])
    assert names(config) == ["localhost:6379"]
    assert config.targets[0].endpoint == Endpoint("redis", host="localhost", port=6379)


def test_redis_addr_twice_replaces_the_file_targets(tmp_path: Path) -> None:
    config = load(["--config.file", str(file_with_targets(tmp_path)),
                   "--redis.addr", "redis://cache.internal:6380/2",
                   "--redis.addr", "rediss://sessions.internal"])
    assert names(config) == ["cache.internal:6380/2", "sessions.internal:6379"]
    assert config.targets[0].endpoint == Endpoint("redis", host="cache.internal", port=6380,
                                                  db=2)
    assert config.targets[1].endpoint.scheme == "rediss"
    # the rest of the file still applies
    assert config.poll == PollConfig(interval=30.0, client_list_interval=30.0)
    assert all(item.max_clients == 77 for item in config.targets)


@pytest.mark.parametrize(("addr", "name"), [
    ("redis://h", "h:6379"),
    ("redis://h:6380/0", "h:6380"),
    ("redis://h:6380/3", "h:6380/3"),
    ("redis://[::1]:6379", "[::1]:6379"),
    ("unix:///run/redis.sock", "/run/redis.sock"),
])
def test_redis_addr_target_names(addr: str, name: str) -> None:
    assert names(load(["--redis.addr", addr])) == [name]


def test_redis_user_and_password_file_apply_to_every_addr(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    config = load(["--redis.addr", "redis://a:1", "--redis.addr", "redis://b:2",
                   "--redis.user", "exporter", "--redis.password-file", str(secret)])
    assert len(config.targets) == 2
    for item in config.targets:
        assert item.username == "exporter"
        assert item.password_file == str(secret)
        assert item.password is not None
        assert item.password.reveal() == PASSWORD
    assert PASSWORD not in repr(config)


def test_redis_addr_targets_take_the_file_defaults_for_unset_credentials(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("defaults: {username: monitor, password_env: PW}\n", encoding="utf-8")
    config = load(["--config.file", str(path), "--redis.addr", "redis://a:1"],
                  env={"PW": PASSWORD})
    only = config.targets[0]
    assert only.username == "monitor"
    assert only.password is not None
    assert only.password.reveal() == PASSWORD


def test_missing_password_file_flag_exits_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent"
    assert run_main(["--redis.addr", "redis://a:1", "--redis.password-file", str(missing),
                     "--check-config"]) == 2
    err = capsys.readouterr().err
    assert f"--redis.addr[0].password_file: file not found: {missing}" in err
    assert "Traceback" not in err


def test_password_in_redis_addr_is_never_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--redis.addr", f"redis://user:{PASSWORD}@a:1", "--check-config"]) == 2
    out, err = capsys.readouterr()
    assert "--redis.addr[0].url: must not contain a password" in err
    assert PASSWORD not in out + err


def test_bad_redis_addrs_report_only_their_url_problems(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two bad URLs are two problems; their placeholder names must not add a third
    ("duplicate target name '(invalid)'") about a name the user never chose."""
    assert run_main(["--redis.addr", "http://a:1", "--redis.addr", "redis://b:99999",
                     "--check-config"]) == 2
    problems = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert problems == [
        "config error: --redis.addr[0].url: scheme must be redis, rediss or unix",
        "config error: --redis.addr[1].url: port must be a number from 1 to 65535",
    ]


def test_same_redis_addr_twice_is_a_duplicate(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--redis.addr", "redis://a:1", "--redis.addr", "redis://a:1",
                     "--check-config"]) == 2
    assert "--redis.addr[1].name: duplicate target name 'a:1'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# environment and precedence


def test_env_names() -> None:
    assert cli.env_name("--web.listen-address") == \
        "REDIS_CONNECTION_EXPORTER_WEB_LISTEN_ADDRESS"
    assert cli.env_name("--redis.password-file") == \
        "REDIS_CONNECTION_EXPORTER_REDIS_PASSWORD_FILE"
    assert cli.env_name("--redis.addr") == ADDR_ENV


def test_env_redis_addr_gives_two_targets() -> None:
    config = load([], env={ADDR_ENV: "redis://a:1,redis://b:2"})
    assert names(config) == ["a:1", "b:2"]


def test_env_redis_addr_overrides_the_file(tmp_path: Path) -> None:
    config = load(["--config.file", str(file_with_targets(tmp_path))],
                  env={ADDR_ENV: "redis://a:1"})
    assert names(config) == ["a:1"]


def test_env_credentials_apply(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD, encoding="utf-8")
    env = {ADDR_ENV: "redis://a:1",
           "REDIS_CONNECTION_EXPORTER_REDIS_USER": "exporter",
           "REDIS_CONNECTION_EXPORTER_REDIS_PASSWORD_FILE": str(secret)}
    only = load([], env=env).targets[0]
    assert only.username == "exporter"
    assert only.password is not None
    assert only.password.reveal() == PASSWORD


def test_env_config_file(tmp_path: Path) -> None:
    env = {"REDIS_CONNECTION_EXPORTER_CONFIG_FILE": str(file_with_targets(tmp_path))}
    assert names(load([], env=env)) == ["from-file"]


def test_flag_overrides_env_for_a_single_value_flag() -> None:
    env = {"REDIS_CONNECTION_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.1:1111",
           "REDIS_CONNECTION_EXPORTER_REDIS_USER": "from-env"}
    parser = cli.build_parser(env)
    assert parser.parse_args([]).listen_address == "127.0.0.1:1111"
    args = parser.parse_args(["--web.listen-address", "127.0.0.1:2222",
                              "--redis.user", "from-flag"])
    assert args.listen_address == "127.0.0.1:2222"
    assert args.redis_user == "from-flag"


def test_flag_overrides_env_for_redis_addr() -> None:
    """Flags override the environment: --redis.addr replaces the env list, never extends it."""
    config = load(["--redis.addr", "redis://c:3"], env={ADDR_ENV: "redis://a:1,redis://b:2"})
    assert names(config) == ["c:3"]


def test_env_bad_listen_address_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"REDIS_CONNECTION_EXPORTER_WEB_LISTEN_ADDRESS": "nonsense"}
    assert run_main(["--check-config"], env=env) == 2
    err = capsys.readouterr().err
    assert "--web.listen-address" in err
    assert "Traceback" not in err


def test_env_bad_log_level_exits_2() -> None:
    """An invalid value from the environment is a bad flag (exit 2), not a KeyError."""
    env = {"REDIS_CONNECTION_EXPORTER_LOG_LEVEL": "bogus"}
    assert run_main(["--check-config"], env=env) == 2


# --------------------------------------------------------------------------------------------
# exit codes


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--version"]) == 0
    out = capsys.readouterr().out
    assert __version__ in out
    assert "redis-connection-exporter" in out


def test_check_config_without_file_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--check-config"]) == 0
    assert "config OK: 1 target(s)" in capsys.readouterr().out


def test_check_config_with_env_targets_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--check-config"], env={ADDR_ENV: "redis://a:1,redis://b:2"}) == 0
    assert "config OK: 2 target(s)" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--no-such-flag"],
    ["--redis.address", "redis://a:1"],
    ["--log.level", "bogus"],
    ["--log.format", "xml"],
    ["--redis.addr"],
    ["positional"],
])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main([*argv, "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("address", ["nonsense", "localhost:http", ":99999", "127.0.0.1:",
                                     ""])
def test_bad_listen_address_exits_2(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--web.listen-address", address, "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "--web.listen-address" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("address", [":9379", "127.0.0.1:0", "[::1]:9379", "localhost:9379"])
def test_good_listen_address_with_check_config(address: str) -> None:
    assert run_main(["--web.listen-address", address, "--check-config"]) == 0


def test_check_config_never_binds_the_listen_address(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        assert run_main(["--web.listen-address", f"127.0.0.1:{port}", "--check-config"]) == 0
        assert run_main(["--web.listen-address", f"127.0.0.1:{port}", "--check-config",
                         "--redis.addr", "ftp://a"]) == 2


def test_credential_flags_alone_apply_to_the_default_target(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    config = load(["--redis.user", "mon", "--redis.password-file", str(secret)])
    assert names(config) == ["localhost:6379"]
    assert config.targets[0].username == "mon"
    assert config.targets[0].password is not None
    assert config.targets[0].password.reveal() == PASSWORD


def test_credential_flags_with_a_config_file_and_no_addr_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_main(["--config.file", str(file_with_targets(tmp_path)), "--redis.user", "mon",
                     "--check-config"])
    assert code == 2
    assert "apply to --redis.addr targets" in capsys.readouterr().err
