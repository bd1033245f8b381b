#!/usr/bin/env python3
"""Capture the INFO and CLIENT LIST fixtures from real server builds.

For each build (an id of `.servers/servers.tsv`, installed by `scripts/install-servers`) this
starts a private server on a free loopback port (`--bind 127.0.0.1 ::1`, a unix socket in a
private temporary directory, `--save '' --appendonly no`), opens the client population of the
original `redis-7.0` capture over raw sockets, and lets the capturing connection
`redis-connection-exporter` send the INFO the exporter sends, `CLIENT LIST` and plain `INFO`.
The replies are written byte for byte to `tests/data/<id>/`: `info.txt`, `client_list.txt`,
`info_all.txt`, and `expected.json`, which a separate naive reader computes from the captured
text and which must agree with the population opened. Standard library only.

    python3 -m tests.data.capture                       # every build in CAPTURED
    python3 -m tests.data.capture --only redis-6.2      # one build (repeatable)
    python3 -m tests.data.capture --only redis-7.0 --out /tmp/scratch

Names, the order in which clients open and the moment of the capture (two seconds after the
clients opened, away from a second boundary) are fixed, so ids, ages, idle times and the
uptime repeat from run to run; ports, the socket path, pids, run ids, times and memory figures
are the server's own. A `SYNTHESIZED.md` left in a directory it captures is removed (the
directory is captured now). Every server started is stopped by its PID, also when a capture
fails or the script gets SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from types import FrameType

from tests.data.capture_common import (
    HERE,
    MANIFEST,
    Args,
    JsonDict,
    ManifestBuild,
    encode,
    read_manifest,
)

# The directories captured from a real build, fixture directory = build id.
CAPTURED = ("redis-5.0", "redis-6.0", "redis-6.2", "redis-7.4", "redis-8.0", "valkey-8.0",
            "valkey-8.1")
# Never rewritten in tests/data: the original capture that make_synthesized.py reads.
KEEP = {"redis-7.0": "the original 7.0.15 capture, source of the synthesized files"}

CAPTURER = "redis-connection-exporter"
PASSWORD = "apppass"  # of the throwaway ACL user `app` on a private server
READY_TIMEOUT = 20.0
IO_TIMEOUT = 10.0
AGE = 2  # seconds between opening the clients and the capture, as in the 7.0 capture



@dataclass(frozen=True)
class Build(ManifestBuild):
    """One line of .servers/servers.tsv, with what this capture asks of it."""

    @property
    def acl(self) -> bool:
        return self.compat >= (6, 0)

    @property
    def info_command(self) -> Args:
        """What the exporter sends: several sections from 7.0 on, before that plain INFO."""
        if self.compat >= (7, 0):
            return ("INFO", "server", "clients", "memory", "persistence", "stats",
                    "replication", "threads")
        return ("INFO",)

    @property
    def acl_setuser(self) -> Args:
        # Channel rules (`&*`) are 6.2+; 6.0 lets every user use every channel.
        channels = ("&*",) if self.compat >= (6, 2) else ()
        return ("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~*", *channels, "+@all")


# -- RESP over a raw socket ----------------------------------------------------------------

class ServerError(Exception):
    """An error reply."""


Reply = bytes | int | list["Reply"] | None


class Conn:
    """One client connection, sending one command at a time (no pipelining)."""

    def __init__(self, family: int, address: str | tuple[str, int]) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(address)
        self.stream = self.sock.makefile("rb")

    def send(self, *args: str) -> None:
        self.sock.sendall(encode(args))

    def call(self, *args: str) -> Reply:
        self.send(*args)
        return self.read()

    def read(self) -> Reply:
        line = self.stream.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"connection closed mid-reply: {line!r}")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body
        if kind == b"-":
            raise ServerError(body.decode("utf-8", "replace"))
        if kind == b":":
            return int(body)
        if kind == b"$":
            return None if int(body) < 0 else self._bulk(int(body))
        if kind == b"*":
            return [self.read() for _ in range(int(body))]
        raise ConnectionError(f"not RESP2: {line!r}")

    def _bulk(self, size: int) -> bytes:
        data = self.stream.read(size + 2)
        if len(data) != size + 2 or not data.endswith(b"\r\n"):
            raise ConnectionError("bulk reply cut short")
        return data[:-2]

    def bulk(self, *args: str) -> bytes:
        reply = self.call(*args)
        if not isinstance(reply, bytes):
            raise ConnectionError(f"{args}: expected a bulk string, got {reply!r}")
        return reply

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


# -- the private server --------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    port: int
    unixsocket: str


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe4:
            probe4.bind(("127.0.0.1", 0))
            port = int(probe4.getsockname()[1])
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe6:
                try:
                    probe6.bind(("::1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free on both 127.0.0.1 and ::1")


def wait_ready(proc: subprocess.Popen[bytes], log: str, endpoint: Endpoint) -> None:
    """Ready when the log says so and the socket file exists; no connection is spent on it,
    so the client ids are those of a fresh server."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        ready = os.path.exists(log) and b"Ready to accept connections" in read_bytes(log)
        if ready and os.path.exists(endpoint.unixsocket):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT}s:\n{tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it has not exited within 10 s."""
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextmanager
def private_server(build: Build) -> Iterator[Endpoint]:
    workdir = tempfile.mkdtemp(prefix=f"rce-capture-{build.id}-")
    endpoint = Endpoint(free_port(), os.path.join(workdir, "redis.sock"))
    log = os.path.join(workdir, "server.log")
    command = [build.wrapper, "--port", str(endpoint.port), "--bind", "127.0.0.1", "::1",
               "--unixsocket", endpoint.unixsocket, "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--dir", workdir, "--logfile", log]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(proc, log, endpoint)
        yield endpoint
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def tail(path: str) -> str:
    return read_bytes(path)[-2000:].decode("utf-8", "replace") if os.path.exists(path) else ""


# -- the client population -----------------------------------------------------------------

@dataclass(frozen=True)
class Client:
    """One connection of the population: its name and the commands it sends."""

    name: str  # "" for an unnamed client
    commands: tuple[Args, ...]
    via: str = "tcp4"  # tcp4, tcp6 or unix
    pending: bool = False  # the last command blocks (BLPOP): its reply is not read
    expect_flags: str = "N"
    expect_db: str = "0"
    expect_user: str | None = "default"  # None: no `user` field (before ACL)


def setname(name: str) -> Args:
    return ("CLIENT", "SETNAME", name)


def named(name: str, *rest: Args, user: str | None, via: str = "tcp4", pending: bool = False,
          flags: str = "N", db: str = "0") -> Client:
    """A client that names itself first, then sends `rest`."""
    return Client(name, (setname(name), *rest), via, pending, flags, db, user)


def population(build: Build) -> list[Client]:
    """The clients of the redis-7.0 capture (tests/data/README.md), in the order they open."""
    user = "default" if build.acl else None
    billing = (Client("billing", (("AUTH", "app", PASSWORD), setname("billing")),
                      expect_user="app") if build.acl else named("billing", user=None))
    plain = ("api-7f9c2d4e1a", "api-0b1c2d3e4f", "api-99aa88bb77", "web-5d8f7c9b6-x2k4p",
             "web-5d8f7c9b6-q7z9m", "worker")
    return [
        *(named(name, user=user) for name in plain),
        Client("", (("PING",),), expect_user=user),
        Client("", (("PING",),), expect_user=user),
        billing,
        named("cache-db3", ("SELECT", "3"), db="3", user=user),
        named("sub-listener", ("SUBSCRIBE", "news"), flags="P", user=user),
        named("psub-listener", ("PSUBSCRIBE", "news.*"), flags="P", user=user),
        named("queue-consumer", ("BLPOP", "somelist", "0"), pending=True, flags="b", user=user),
        named("tx-client", ("MULTI",), ("SET", "k", "v"), flags="x", user=user),
        named("unix-client", via="unix", flags="U", user=user),
        named("ipv6-client", via="tcp6", user=user),
    ]


def connect(via: str, endpoint: Endpoint) -> Conn:
    if via == "unix":
        return Conn(socket.AF_UNIX, endpoint.unixsocket)
    if via == "tcp6":
        return Conn(socket.AF_INET6, ("::1", endpoint.port))
    return Conn(socket.AF_INET, ("127.0.0.1", endpoint.port))


def open_client(client: Client, endpoint: Endpoint) -> Conn:
    conn = connect(client.via, endpoint)
    try:
        for index, command in enumerate(client.commands):
            if client.pending and index == len(client.commands) - 1:
                conn.send(*command)
            else:
                conn.call(*command)
    except BaseException:
        conn.close()
        raise
    return conn


def wait_for_second_fraction(fraction: float) -> None:
    """Sleep to `fraction` of the next wall-clock second (Redis counts age in whole seconds
    of its cached clock, which lags the wall clock by up to 1/hz)."""
    now = time.time()
    time.sleep((int(now) + 1 + fraction) - now)


# -- the capture ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Capture:
    info: bytes
    client_list: bytes
    info_all: bytes


def capture(build: Build, clients: list[Client]) -> Capture:
    wait_for_second_fraction(0.05)  # so that uptime_in_seconds repeats too
    with private_server(build) as endpoint, ExitStack() as conns:
        wait_for_second_fraction(0.2)
        opened_at = int(time.time())
        capturer = conns.enter_context(closing(connect("tcp4", endpoint)))
        if build.acl:
            capturer.call(*build.acl_setuser)
        capturer.call(*setname(CAPTURER))
        for client in clients:
            conns.enter_context(closing(open_client(client, endpoint)))
        if int(time.time()) != opened_at:
            raise RuntimeError("opening the clients took past a second boundary")
        time.sleep(opened_at + AGE + 0.5 - time.time())
        info = capturer.bulk(*build.info_command)
        client_list = capturer.bulk("CLIENT", "LIST")
        return Capture(info, client_list, capturer.bulk("INFO"))


# -- expected.json: a naive reader, independent of the exporter ----------------------------

CLIENT_TYPES = (("M", "master"), ("O", "monitor"), ("S", "replica"), ("P", "pubsub"))


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(?:^| )([a-z-]+)=(\S*)", line))


def client_type(flags: str) -> str:
    return next((kind for letter, kind in CLIENT_TYPES if letter in flags), "normal")


def info_field(info: bytes, key: str) -> str | None:
    found = re.search(rb"^" + re.escape(key.encode()) + rb":(.*)\r$", info, re.MULTILINE)
    return found.group(1).decode() if found else None


def expected(client_list: bytes, info: bytes) -> JsonDict:
    lines = [fields(line) for line in client_list.decode("latin-1").split("\n") if line]
    connected = info_field(info, "connected_clients")
    return {
        "client_list_lines": len(lines),
        "connected_clients": int(connected) if connected is not None else None,
        "names": dict(collections.Counter(line["name"] for line in lines)),
        "client_types": dict(collections.Counter(client_type(line["flags"]) for line in lines)),
    }


# -- checks against what was opened --------------------------------------------------------

def check_counts(counts: JsonDict, clients: list[Client]) -> None:
    opened = [*(client.name for client in clients), CAPTURER]
    types = collections.Counter("pubsub" if client.expect_flags == "P" else "normal"
                                for client in clients)
    types["normal"] += 1  # the capturer
    want: JsonDict = {"client_list_lines": len(opened), "connected_clients": len(opened),
                      "names": dict(collections.Counter(opened)), "client_types": dict(types)}
    if counts != want:
        raise AssertionError(f"captured {counts}\n  opened {want}")


def check_lines(client_list: bytes, clients: list[Client], build: Build) -> None:
    """Per client: flags, db, user and the address form of its transport."""
    by_name: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
    for text in client_list.decode("latin-1").split("\n"):
        if text:
            parsed = fields(text)
            by_name[parsed["name"]].append(parsed)
    for client in clients:
        line = by_name[client.name][0]
        got = (line["flags"], line["db"], line.get("user"))
        want = (client.expect_flags, client.expect_db, client.expect_user)
        if got != want:
            raise AssertionError(f"{client.name!r}: (flags, db, user) {got} != {want}")
    addr = {"unix-client": r"/.*\.sock:0", "ipv6-client": r"\[::1\]:\d+",
            CAPTURER: r"127\.0\.0\.1:\d+"}
    for name, pattern in addr.items():
        if not re.fullmatch(pattern, by_name[name][0]["addr"]):
            raise AssertionError(f"{name}: addr {by_name[name][0]['addr']}")
    if not build.acl and any("user" in line for lines in by_name.values() for line in lines):
        raise AssertionError("a user field before ACL existed")


def check_info(result: Capture, build: Build) -> None:
    version_key = "valkey_version" if build.family == "valkey" else "redis_version"
    for name, info in (("info", result.info), ("info_all", result.info_all)):
        if info_field(info, version_key) != build.version:
            raise AssertionError(f"{name}: {version_key} is not {build.version}")
        if not info.endswith(b"\r\n") or b"\n" in info.replace(b"\r\n", b""):
            raise AssertionError(f"{name}: lines do not all end in CRLF")
    sections = re.findall(rb"^# (\w+)\r$", result.info, re.MULTILINE)
    threads = [b"Threads"] if build.family == "redis" and build.compat >= (8, 0) else []
    wanted = [b"Server", b"Clients", b"Memory", b"Persistence", b"Stats", b"Replication",
              *threads]
    if len(build.info_command) > 1 and sorted(sections) != sorted(wanted):
        raise AssertionError(f"multi-section INFO gave sections {sections}")


# -- output --------------------------------------------------------------------------------

def write(directory: str, name: str, data: bytes) -> None:
    with open(os.path.join(directory, name), "wb") as handle:  # binary: CRLF and LF kept
        handle.write(data)


def capture_build(build: Build, out: str) -> JsonDict:
    clients = population(build)
    result = capture(build, clients)
    counts = expected(result.client_list, result.info)
    check_counts(counts, clients)
    check_lines(result.client_list, clients, build)
    check_info(result, build)
    directory = os.path.join(out, build.id)
    os.makedirs(directory, exist_ok=True)
    write(directory, "info.txt", result.info)
    write(directory, "client_list.txt", result.client_list)
    write(directory, "info_all.txt", result.info_all)
    write(directory, "expected.json",
          (json.dumps(counts, indent=2, sort_keys=True) + "\n").encode())
    stale = os.path.join(directory, "SYNTHESIZED.md")
    if os.path.exists(stale):  # the directory is captured now
        os.remove(stale)
    return counts


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="ID",
                        help=f"a build id of {MANIFEST} (repeatable); default: "
                             f"{' '.join(CAPTURED)}")
    parser.add_argument("--out", default=HERE,
                        help="where the <id>/ directories go (default: tests/data)")
    return parser.parse_args(argv)


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    builds = read_manifest(Build)
    ids = args.only or list(CAPTURED)
    missing = [build_id for build_id in ids if build_id not in builds]
    if missing:
        sys.exit(f"not in {MANIFEST}: {' '.join(missing)} (run scripts/install-servers)")
    kept = [build_id for build_id in ids if build_id in KEEP
            and os.path.abspath(args.out) == HERE]
    if kept:
        sys.exit(f"refusing to rewrite tests/data/{kept[0]}: {KEEP[kept[0]]} "
                 "(use --out to capture it elsewhere)")
    signal.signal(signal.SIGTERM, on_sigterm)
    for build_id in ids:
        build = builds[build_id]
        counts = capture_build(build, args.out)
        print(f"{build_id}: {build.family} {build.version}, {counts['client_list_lines']} "
              f"CLIENT LIST lines, connected_clients {counts['connected_clients']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
