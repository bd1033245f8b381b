"""Command line: flags (Prometheus style), environment, config file; exit codes.

Exit codes: 0 stopped cleanly or config valid, 1 runtime failure (cannot listen), 2 bad flags
or bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from exporter import __version__
from exporter.app import Exporter, WebSettings, parse_listen_address
from exporter.config.loader import DEFAULT_URL, ConfigError, build_config, load_config_file
from exporter.config.model import Config
from exporter.config.targets import parse_target_url
from exporter.config.web import WebConfig, WebConfigError, load_web_config
from exporter.logsetup import LEVELS, configure, kv
from exporter.poll.scheduler import PROBE_WORKERS
from exporter.runtime import check_file_budget, fix_mmap_threshold, limit_malloc_arenas
from exporter.sharding import Shard, resolve_shard

log = logging.getLogger(__name__)
ENV_PREFIX = "REDIS_CONNECTION_EXPORTER_"
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def env_name(flag: str) -> str:
    """`--web.listen-address` -> `REDIS_CONNECTION_EXPORTER_WEB_LISTEN_ADDRESS`."""
    return ENV_PREFIX + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redis-connection-exporter",
        description="Prometheus exporter for Redis client connections. Every flag can also "
                    f"be set as {ENV_PREFIX}<FLAG> (dots and dashes as underscores).")

    def option(flag: str, **kwargs: Any) -> None:
        # Repeatable flags read their environment value after parsing (see `resolve_env`):
        # a list default would be extended by the flags instead of replaced.
        value = env.get(env_name(flag))
        if value is not None and kwargs.get("action") != "append":
            kwargs["default"] = value
        parser.add_argument(flag, **kwargs)

    option("--config.file", dest="config_file", metavar="FILE",
           help="YAML configuration file (default: poll redis://localhost:6379)")
    option("--redis.addr", dest="redis_addr", action="append", metavar="URL",
           help="target URL, repeatable; replaces the config file's targets")
    option("--redis.user", dest="redis_user", metavar="USER",
           help="ACL user for --redis.addr targets")
    option("--redis.password-file", dest="redis_password_file", metavar="FILE",
           help="file holding the password for --redis.addr targets")
    option("--web.listen-address", dest="listen_address", default=":9379",
           help="address to serve HTTP on (default :9379)")
    option("--web.telemetry-path", dest="telemetry_path", default="/metrics",
           help="path of the metrics (default /metrics)")
    option("--web.config.file", dest="web_config_file", metavar="FILE",
           help="exporter-toolkit web config: TLS and basic auth on every HTTP path")
    option("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
           help="enable POST /-/reload (SIGHUP always reloads)")
    option("--shard.index", dest="shard_index", metavar="I",
           help="poll only the targets whose hashmod(name, --shard.count) is I (default: the "
                "trailing -<n> of the hostname, a StatefulSet ordinal, when the count is > 1)")
    option("--shard.count", dest="shard_count", metavar="N",
           help="number of exporter replicas sharing the targets (default 1)")
    option("--log.level", dest="log_level", default="info", choices=sorted(LEVELS))
    option("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print every problem, exit 0 or 2")
    parser.add_argument("--version", action="version",
                        version=f"redis-connection-exporter {__version__}")
    return parser


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Flags, then the environment for what flags did not set; values checked either way."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if args.redis_addr is None and env.get(env_name("--redis.addr")):
        args.redis_addr = [addr for addr in env[env_name("--redis.addr")].split(",") if addr]
    for flag, dest, choices in (("--log.level", "log_level", LEVELS),
                                ("--log.format", "log_format", ("logfmt", "json"))):
        if getattr(args, dest) not in choices:
            parser.error(f"{flag} ({env_name(flag)}): invalid choice "
                         f"{getattr(args, dest)!r} (choose from {', '.join(choices)})")
    return args


def load(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    override = None
    addrs = args.redis_addr
    credentials = args.redis_user or args.redis_password_file
    if credentials and not addrs:
        if args.config_file:  # silently ignoring them would poll with the wrong user
            raise ConfigError(["--redis.user and --redis.password-file apply to --redis.addr "
                               "targets; set username and password_file in the config file"])
        addrs = [DEFAULT_URL]
    if addrs:
        override = [_addr_target(index, addr, args) for index, addr in enumerate(addrs)]
    if args.config_file:
        return load_config_file(args.config_file, env=env, override_targets=override)
    return build_config(None, env=env, override_targets=override)


def _addr_target(index: int, addr: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        name = parse_target_url(addr).display
    except ValueError:  # validation reports the url problem, never the URL itself
        name = f"--redis.addr[{index}]"
    target: dict[str, Any] = {"name": name, "url": addr}
    if args.redis_user:
        target["username"] = args.redis_user
    if args.redis_password_file:
        target["password_file"] = args.redis_password_file
    return target


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         hostname: Callable[[], str] = socket.gethostname) -> int:
    env = os.environ if env is None else env
    args = parse_args(argv, env)
    configure(args.log_level, args.log_format)
    web_config, problems = _web_config(args.web_config_file)
    shard = Shard()
    try:
        shard = resolve_shard(args.shard_index, args.shard_count, hostname())
    except ValueError as error:
        problems.insert(0, f"flag error: {error}")
    try:
        parse_listen_address(args.listen_address)
        config = load(args, env)
    except ConfigError as error:
        problems[:0] = [f"config error: {problem}" for problem in error.problems]
    except ValueError as error:
        problems.insert(0, f"flag error: {error}")
    if problems:  # both files' problems at once, then exit before binding
        print("\n".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"config OK: {len(config.targets)} target(s)"
              + (f", {len(shard.select(config.targets))} in {shard.describe()}"
                 if shard.count > 1 else ""))
        if web_config is not None:
            print(f"web config OK: tls={web_config.tls is not None} "
                  f"basic_auth_users={len(web_config.users)}")
        return EXIT_OK
    web = WebSettings(args.listen_address, args.telemetry_path, args.enable_lifecycle,
                      args.web_config_file)
    _set_process_limits(config, shard, env)
    return run(config, web, lambda: load(args, env), web_config, shard)


def _set_process_limits(config: Config, shard: Shard, env: Mapping[str, str]) -> None:
    """Before any thread starts (see exporter/runtime.py)."""
    arenas = limit_malloc_arenas(env)
    threshold = fix_mmap_threshold(env)
    log.info("malloc %s", kv(
        arenas_max=arenas if arenas is not None else env.get("MALLOC_ARENA_MAX", "default"),
        mmap_threshold=threshold if threshold is not None
        else env.get("MALLOC_MMAP_THRESHOLD_", "default")))
    owned = shard.select(config.targets)
    probing = any(target.connect_probe.enabled for target in owned)
    check_file_budget(len(owned), min(PROBE_WORKERS, len(owned)) if probing else 0)


def _web_config(path: str | None) -> tuple[WebConfig | None, list[str]]:
    """The parsed --web.config.file, or its problems (key paths, never a hash)."""
    if not path:
        return None, []
    try:
        return load_web_config(path), []
    except WebConfigError as error:
        return None, [f"web config error: {problem}" for problem in error.problems]


def run(config: Config, web: WebSettings, loader: Callable[[], Config] | None = None,
        web_config: WebConfig | None = None, shard: Shard | None = None) -> int:
    exporter = Exporter(config, web, loader, web_config, shard)
    try:
        exporter.start()
    except OSError as error:
        log.error("cannot listen %s", kv(address=web.listen_address, err=error.strerror))
        exporter.stop()
        return EXIT_FAILURE
    except WebConfigError as error:  # changed between the check and the start
        for problem in error.problems:
            log.error("web config error %s", kv(problem=problem))
        exporter.stop()
        return EXIT_CONFIG
    stop, reload, wake = threading.Event(), threading.Event(), threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping %s", kv(signal=signal.Signals(signum).name))
        stop.set()
        wake.set()

    def request_reload(_signum: int, _frame: object) -> None:
        reload.set()  # reloaded here in the main loop, not inside the signal handler
        wake.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    while not stop.is_set():
        wake.wait(1.0)
        wake.clear()
        if reload.is_set() and not stop.is_set():
            reload.clear()
            log.info("reloading %s", kv(signal="SIGHUP"))
            try:
                exporter.reload()
            except Exception:  # a reload must never stop the exporter
                log.exception("reload failed; the running configuration stays")
    exporter.stop()
    return EXIT_OK
