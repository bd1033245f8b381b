#!/usr/bin/env python3
"""Capture raw CLUSTER and SENTINEL replies from real server builds, byte for byte.

For each build (an id of `.servers/servers.tsv`, installed by `scripts/install-servers`) this
starts private servers on free loopback ports (127.0.0.1 only, each in its own directory of a
private temporary directory, `--save '' --appendonly no`), sets up a topology, sends commands
as RESP2 arrays over raw sockets and writes each reply exactly as it came off the wire to
`tests/data/topology/<id>/<what>.resp`, with a `meta.json` saying for every file the command,
the node asked, every node of the topology (port, id, role) and what was unusual at the time.
Standard library only.

    python3 -m tests.data.capture_topology                      # every build listed below
    python3 -m tests.data.capture_topology --only redis-7.0     # one build (repeatable)
    python3 -m tests.data.capture_topology --only redis-7.0 --out /tmp/scratch

Cluster (every build of CLUSTER_BUILDS; any other id given with --only gets this part too):
3 masters + 3 replicas (`requirepass`/`masterauth` clusterpw, `cluster-node-timeout 3000`,
`repl-diskless-sync-delay 0`), made by hand the way `redis-cli --cluster create` does it
(ADDSLOTS 0-5460 / 5461-10922 / 10923-16383, SET-CONFIG-EPOCH 1..6, MEET, REPLICATE), which
works the same on every build; captured from the first master once every node reports
`cluster_state:ok`, every node's CLUSTER NODES shows the same nodes, roles and slots and every
replica's link is up. ODD_CASES adds, on the builds listed there, the states a parser meets
less often (a failed replica, a manual failover, a node in handshake and a slot-less master,
announced hostnames). Sentinel (SENTINEL_BUILDS): a master and a replica (`requirepass` and
`masterauth` datapw) and three Sentinels without a password, then a SENTINEL FAILOVER while a
fourth connection is subscribed to `+switch-master`.

A build's directory is written whole: into `.<id>.partial/` first, which replaces `<id>/`
only when every capture of the build succeeded. Every server started is stopped by its PID,
also when a capture fails or the script gets SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType

from tests.data.capture_common import (
    HERE,
    MANIFEST,
    ROOT,
    Args,
    JsonDict,
    ManifestBuild,
    encode,
    read_manifest,
)

OUT = os.path.join(HERE, "topology")

CLUSTER_BUILDS = ("redis-5.0", "redis-6.0", "redis-6.2", "redis-7.0", "redis-7.4", "redis-8.0",
                  "valkey-8.0")
ODD_CASES = {"redis-7.0": ("fail", "failover", "slotless", "hostnames"),
             "valkey-8.0": ("hostnames",)}
SENTINEL_BUILDS = ("redis-7.0", "valkey-8.0", "redis-6.2")

CLUSTER_PASSWORD = "clusterpw"
DATA_PASSWORD = "datapw"
MASTER_NAME = "mymaster"
NODE_TIMEOUT_MS = 3000
SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))  # what redis-cli gives 3 masters
WRITES = 50
PORT_RANGE = (20000, 45000)  # bus ports (+10000) stay <= 55535
READY_TIMEOUT = 20.0
IO_TIMEOUT = 10.0
CONVERGE_TIMEOUT = 90.0
SERVER_FIELDS = ("redis_version", "valkey_version", "server_name", "redis_git_sha1",
                 "redis_build_id", "redis_mode", "server_mode")



def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Build(ManifestBuild):
    """One line of .servers/servers.tsv, with what this capture asks of it."""

    @property
    def has_shards(self) -> bool:
        return self.compat >= (7, 0)

    @property
    def has_myshardid(self) -> bool:
        return self.compat >= (7, 2)


# -- RESP2 over a raw socket ---------------------------------------------------------------

class ServerError(Exception):
    """An error reply (returned as a value by parse, raised by Conn.call)."""


class Incomplete(Exception):
    """The buffer ends before the reply does."""


Reply = bytes | int | list["Reply"] | ServerError | None
KINDS = {b"+": "simple string", b"-": "error", b":": "integer", b"$": "bulk string",
         b"*": "array"}


def parse(buf: bytes, pos: int = 0) -> tuple[Reply, int]:
    """One RESP2 value starting at `pos`: (value, offset just past it); Incomplete when the
    buffer ends first."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, body, after = buf[pos:pos + 1], buf[pos + 1:end], end + 2
    if kind == b"+":
        return body, after
    if kind == b"-":
        return ServerError(body.decode("utf-8", "replace")), after
    if kind == b":":
        return int(body), after
    size = int(body)
    if kind == b"$":
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            raise Incomplete
        if buf[after + size:after + size + 2] != b"\r\n":
            raise ConnectionError("bulk string not followed by CRLF")
        return buf[after:after + size], after + size + 2
    if kind == b"*":
        if size < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(size):
            item, after = parse(buf, after)
            items.append(item)
        return items, after
    raise ConnectionError(f"not RESP2: {buf[pos:end + 2]!r}")


class Conn:
    """One client connection to 127.0.0.1:port; replies are kept as the bytes received."""

    def __init__(self, port: int, password: str | None = None,
                 timeout: float = IO_TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if password is not None:
            try:
                self.call("AUTH", password)
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *commands: Args) -> None:
        self.sock.sendall(b"".join(encode(args) for args in commands))

    def read_raw(self, timeout: float | None = None) -> tuple[bytes, Reply]:
        """Exactly one reply: the bytes it took on the wire and its value."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            try:
                value, end = parse(self.buf)
            except Incomplete:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed mid-reply") from None
                self.buf += data
                continue
            raw, self.buf = self.buf[:end], self.buf[end:]
            return raw, value

    def raw(self, *args: str) -> tuple[bytes, Reply]:
        self.send(args)
        raw, value = self.read_raw()
        if self.buf:
            raise ConnectionError(f"{args}: {len(self.buf)} bytes after the reply")
        return raw, value

    def call(self, *args: str) -> Reply:
        _, value = self.raw(*args)
        if isinstance(value, ServerError):
            raise value
        return value

    def text(self, *args: str) -> str:
        value = self.call(*args)
        if not isinstance(value, bytes):
            raise ConnectionError(f"{args}: expected a string, got {value!r}")
        return value.decode()

    def close(self) -> None:
        self.sock.close()


def pairs(flat: Reply) -> dict[str, Reply]:
    """A RESP2 flat [key, value, ...] array as a dict."""
    if not isinstance(flat, list):
        raise ConnectionError(f"expected a flat key/value array, got {flat!r}")
    return {bytes(key).decode(): value  # type: ignore[arg-type]
            for key, value in zip(flat[::2], flat[1::2])}


def info_fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line
                and not line.startswith("#"))


def as_text(value: Reply) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- servers -------------------------------------------------------------------------------

def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortPool:
    """Free loopback ports; with `bus`, port + 10000 is free too."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def get(self, bus: bool) -> int:
        for _ in range(500):
            port = random.randrange(*PORT_RANGE)
            wanted = (port, port + 10000) if bus else (port,)
            if any(p in self.taken or not port_free(p) for p in wanted):
                continue
            self.taken.update(wanted)
            return port
        raise RuntimeError("no free loopback port")


@dataclass
class Server:
    """One server process; started and stopped by its PID."""

    name: str
    workdir: str
    port: int
    password: str | None
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    killed_at: float | None = None

    @property
    def log(self) -> str:
        return os.path.join(self.workdir, "server.log")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.killed_at = None
        self.proc = subprocess.Popen(self.command, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} (:{self.port}) exited with "
                                   f"{self.proc.returncode}:\n{self.tail()}")
            try:
                with self.conn() as conn:
                    conn.call("PING")
                return
            except (OSError, ServerError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} (:{self.port}) not ready after {READY_TIMEOUT}s:\n"
                           f"{self.tail()}")

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited within 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.killed_at = time.monotonic()

    def tail(self) -> str:
        if not os.path.exists(self.log):
            return ""
        with open(self.log, "rb") as handle:
            return handle.read()[-2000:].decode("utf-8", "replace")

    def conn(self, timeout: float = IO_TIMEOUT) -> Conn:
        return Conn(self.port, self.password, timeout)

    def call(self, *args: str) -> Reply:
        with self.conn() as conn:
            return conn.call(*args)

    def text(self, *args: str) -> str:
        with self.conn() as conn:
            return conn.text(*args)

    def raw(self, *args: str) -> tuple[bytes, Reply]:
        with self.conn() as conn:
            return conn.raw(*args)

    def info(self, section: str) -> dict[str, str]:
        return info_fields(self.text("INFO", section))


class Fleet:
    """The servers of one topology, in one private temporary directory."""

    def __init__(self, build: Build, root: str) -> None:
        self.build = build
        self.root = root
        self.ports = PortPool()
        self.servers: list[Server] = []

    def _start(self, name: str, password: str | None, bus: bool,
               make: Callable[[int, str], list[str]]) -> Server:
        workdir = os.path.join(self.root, name)
        os.makedirs(workdir, exist_ok=True)
        for attempt in range(3):
            port = self.ports.get(bus)
            server = Server(name, workdir, port, password, make(port, workdir))
            self.servers.append(server)
            try:
                server.start()
                return server
            except RuntimeError:
                server.stop()
                if attempt == 2 or "Address already in use" not in server.tail():
                    raise
                log(f"{name}: port {port} taken meanwhile, another one")
                os.remove(server.log)
        raise AssertionError("unreachable")

    def base(self, port: int, workdir: str) -> list[str]:
        return ["--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--dir", workdir, "--logfile", os.path.join(workdir, "server.log")]

    def cluster_node(self, name: str) -> Server:
        def make(port: int, workdir: str) -> list[str]:
            return [self.build.wrapper, *self.base(port, workdir), "--save", "",
                    "--appendonly", "no", "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--requirepass", CLUSTER_PASSWORD, "--masterauth", CLUSTER_PASSWORD,
                    "--repl-diskless-sync-delay", "0"]
        return self._start(name, CLUSTER_PASSWORD, True, make)

    def data_node(self, name: str, master: int | None) -> Server:
        """A node watched by the Sentinels; a config file, so that CONFIG REWRITE works."""
        lines = [f"requirepass {DATA_PASSWORD}", f"masterauth {DATA_PASSWORD}"]
        if master is not None:
            lines.append(f"replicaof 127.0.0.1 {master}")

        def make(port: int, workdir: str) -> list[str]:
            config = write_config(workdir, "redis.conf", lines)
            return [self.build.wrapper, config, *self.base(port, workdir), "--save", "",
                    "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        return self._start(name, DATA_PASSWORD, False, make)

    def sentinel(self, name: str, master: int) -> Server:
        lines = [f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2",
                 f"sentinel auth-pass {MASTER_NAME} {DATA_PASSWORD}",
                 f"sentinel down-after-milliseconds {MASTER_NAME} 3000",
                 f"sentinel failover-timeout {MASTER_NAME} 10000"]

        def make(port: int, workdir: str) -> list[str]:
            config = write_config(workdir, "sentinel.conf", lines)
            return [self.build.wrapper, config, "--sentinel", *self.base(port, workdir)]
        return self._start(name, None, False, make)

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def write_config(workdir: str, name: str, lines: list[str]) -> str:
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


@contextmanager
def fleet_of(build: Build) -> Iterator[Fleet]:
    root = tempfile.mkdtemp(prefix=f"rce-topology-{build.id}-")
    fleet = Fleet(build, root)
    try:
        yield fleet
    finally:
        fleet.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def wait_until(what: str, check: Callable[[], str | None],
               timeout: float = CONVERGE_TIMEOUT) -> float:
    """Poll `check` (None: done, else why not yet) until done; the seconds it took."""
    start = time.monotonic()
    reason = "never checked"
    while time.monotonic() - start < timeout:
        try:
            found = check()
        except (OSError, ServerError) as error:
            found = f"{type(error).__name__}: {error}"
        if found is None:
            return time.monotonic() - start
        reason = found
        time.sleep(0.25)
    raise RuntimeError(f"{what}: not after {timeout:.0f} s: {reason}")


# -- the record: files and meta.json -------------------------------------------------------

class Recorder:
    """Writes the files of one build into `.<id>.partial/` and meta.json at the end."""

    def __init__(self, build: Build, out: str, command_line: str) -> None:
        self.build = build
        self.out = out
        self.partial = os.path.join(out, f".{build.id}.partial")
        shutil.rmtree(self.partial, ignore_errors=True)
        os.makedirs(self.partial)
        self.meta: JsonDict = {"build": build.id, "family": build.family,
                               "version": build.version, "captured_with": command_line,
                               "servers": {}, "files": {}}

    def server(self, role: str, info: dict[str, str]) -> None:
        servers = self.meta["servers"]
        assert isinstance(servers, dict)
        servers[role] = {key: info[key] for key in SERVER_FIELDS if key in info}

    def save(self, name: str, raw: bytes, entry: JsonDict) -> None:
        value, end = parse(raw)
        if end != len(raw):
            raise AssertionError(f"{name}: not exactly one reply")
        files = self.meta["files"]
        assert isinstance(files, dict)
        files[name] = {**entry, "reply": KINDS[raw[:1]], "bytes": len(raw)}
        with open(os.path.join(self.partial, name), "wb") as handle:
            handle.write(raw)
        error = f" ({value})" if isinstance(value, ServerError) else ""
        log(f"{self.build.id}/{name}: {KINDS[raw[:1]]}, {len(raw)} bytes{error}")

    def note(self, key: str, text: str) -> None:
        notes = self.meta.setdefault("notes", {})
        assert isinstance(notes, dict)
        notes[key] = text

    def commit(self) -> str:
        with open(os.path.join(self.partial, "meta.json"), "w", encoding="utf-8") as handle:
            json.dump(self.meta, handle, indent=2)
            handle.write("\n")
        final = os.path.join(self.out, self.build.id)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(self.partial, final)
        return final

    def discard(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


# -- cluster -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES."""

    node_id: str
    port: int
    hostname: str
    flags: tuple[str, ...]
    master: str
    slots: tuple[str, ...]

    @property
    def role(self) -> str:
        if "master" in self.flags:
            return "master"
        return "replica" if "slave" in self.flags else "unknown"


def parse_nodes(text: str) -> list[NodeLine]:
    lines = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) < 8:
            continue
        address, _, hostname = parts[1].partition(",")
        port = address.split("@")[0].rsplit(":", 1)[1]
        lines.append(NodeLine(parts[0], int(port) if port else 0, hostname,
                              tuple(parts[2].split(",")), parts[3], tuple(parts[8:])))
    return lines


def shard_nodes(server: Server) -> list[tuple[dict[str, Reply], list[dict[str, Reply]]]]:
    """CLUSTER SHARDS as (shard, its nodes) dicts."""
    reply = server.call("CLUSTER", "SHARDS")
    assert isinstance(reply, list)
    shards = []
    for flat in reply:
        shard = pairs(flat)
        nodes = shard["nodes"]
        assert isinstance(nodes, list)
        shards.append((shard, [pairs(node) for node in nodes]))
    return shards


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return crc16(raw) % 16384


@dataclass
class Cluster:
    build: Build
    fleet: Fleet
    rec: Recorder
    nodes: list[Server]
    formed_at: float = 0.0
    failed: set[str] = field(default_factory=set)  # node ids that every node must flag fail
    history: list[str] = field(default_factory=list)  # what happened before, for meta.json

    @property
    def asked(self) -> Server:
        return self.nodes[0]

    @property
    def live(self) -> list[Server]:
        return [node for node in self.nodes if node.alive]

    def by_id(self, node_id: str) -> Server:
        return next(node for node in self.nodes if node.node_id == node_id)

    def view(self, server: Server | None = None) -> list[NodeLine]:
        return parse_nodes((server or self.asked).text("CLUSTER", "NODES"))

    def describe(self, lines: list[NodeLine]) -> list[JsonDict]:
        ports = {line.node_id: line.port for line in lines}
        return [{"port": line.port, "node_id": line.node_id, "role": line.role,
                 "master_port": ports.get(line.master), "flags": ",".join(line.flags),
                 "slots": " ".join(line.slots)} for line in lines]

    def grab(self, name: str, args: Args, state: str, server: Server | None = None) -> Reply:
        server = server or self.asked
        nodes = self.describe(self.view(server))
        raw, value = server.raw(*args)
        self.rec.save(name, raw, {"command": list(args), "asked_port": server.port,
                                  "asked_node_id": server.node_id, "nodes": nodes,
                                  "state": self.with_history(state)})
        return value

    def with_history(self, state: str) -> str:
        if not self.history:
            return state
        return f"{state}; earlier in this run: {'; '.join(self.history)}"

    def since_formed(self) -> str:
        return (f"{time.monotonic() - self.formed_at:.1f} s after every node agreed "
                "(cluster_state ok, the same nodes, roles and slots, replica links up)")

    # -- convergence

    def node_ok(self, server: Server, expect: int) -> tuple[str | None, frozenset[object]]:
        info = info_fields(server.text("CLUSTER", "INFO"))
        if info.get("cluster_state") != "ok":
            return f":{server.port} cluster_state {info.get('cluster_state')}", frozenset()
        if info.get("cluster_known_nodes") != str(expect):
            return f":{server.port} knows {info.get('cluster_known_nodes')} nodes", frozenset()
        lines = self.view(server)
        for line in lines:
            flagged = {"fail", "fail?", "handshake", "noaddr"} & set(line.flags)
            if line.node_id in self.failed:
                if "fail" not in line.flags:
                    return f":{server.port} flags {line.port} {line.flags}", frozenset()
            elif flagged:
                return f":{server.port} flags {line.port} {sorted(flagged)}", frozenset()
        mine = next(line for line in lines if "myself" in line.flags)
        if mine.role == "replica":
            link = server.info("replication").get("master_link_status")
            if link != "up":
                return f":{server.port} master_link_status {link}", frozenset()
        return None, frozenset((line.node_id, line.role, line.master, line.slots)
                               for line in lines)

    def converged(self) -> str | None:
        views = set()
        for server in self.live:
            reason, view = self.node_ok(server, len(self.nodes))
            if reason:
                return reason
            views.add(view)
        return None if len(views) == 1 else f"{len(views)} different views"

    def wait_converged(self, what: str) -> float:
        took = wait_until(f"{self.build.id}: {what}", self.converged)
        log(f"{self.build.id}: {what} after {took:.1f} s")
        return took

    # -- forming

    def form(self) -> None:
        masters, replicas = self.nodes[:3], self.nodes[3:]
        for node in self.nodes:
            node.node_id = node.text("CLUSTER", "MYID")
        for node, (low, high) in zip(masters, SLOT_RANGES):
            node.call("CLUSTER", "ADDSLOTS", *map(str, range(low, high + 1)))
        for epoch, node in enumerate(self.nodes, 1):
            node.call("CLUSTER", "SET-CONFIG-EPOCH", str(epoch))
        for node in self.nodes[1:]:
            self.asked.call("CLUSTER", "MEET", "127.0.0.1", str(node.port))

        def all_known() -> str | None:
            for node in self.nodes:
                lines = self.view(node)
                if len(lines) != len(self.nodes) or any(
                        "handshake" in line.flags for line in lines):
                    return f":{node.port} sees {len(lines)} nodes"
            return None
        wait_until(f"{self.build.id}: MEET", all_known)
        for replica, master in zip(replicas, masters):
            replica.call("CLUSTER", "REPLICATE", master.node_id)
        self.wait_converged("3 masters + 3 replicas agree")
        self.formed_at = time.monotonic()


def cluster_part(build: Build, rec: Recorder) -> None:
    with fleet_of(build) as fleet:
        nodes = [fleet.cluster_node(f"node{index}") for index in range(6)]
        cluster = Cluster(build, fleet, rec, nodes)
        cluster.form()
        rec.server("cluster", cluster.asked.info("server"))
        basic_captures(cluster)
        write_keys(cluster)
        for case in ODD_CASES.get(build.id, ()):
            ODD[case](cluster)


def basic_captures(cluster: Cluster) -> None:
    build = cluster.build
    state = f"right after the cluster formed, before any write: {cluster.since_formed()}"
    shards = "cluster_shards.resp" if build.has_shards else "cluster_shards_error.resp"
    cluster.grab(shards, ("CLUSTER", "SHARDS"), state)
    cluster.grab("cluster_nodes.resp", ("CLUSTER", "NODES"), state)
    cluster.grab("cluster_myid.resp", ("CLUSTER", "MYID"), state)
    cluster.grab("cluster_myshardid.resp", ("CLUSTER", "MYSHARDID"), state)
    if build.has_myshardid:
        replica = cluster.nodes[3]
        cluster.grab("replica_cluster_myshardid.resp", ("CLUSTER", "MYSHARDID"),
                     f"asked a replica (:{replica.port}); {state}", replica)
    else:
        cluster.rec.note("replica_cluster_myshardid.resp",
                         "not captured: CLUSTER MYSHARDID is 7.2+ (cluster_myshardid.resp "
                         "holds the error)")


def write_keys(cluster: Cluster) -> None:
    """WRITES SETs, each sent to the master of its slot; then wait for the replicas."""
    owners: list[tuple[int, int, Server]] = []
    for line in cluster.view():
        for item in line.slots:
            low, _, high = item.partition("-")
            owners.append((int(low), int(high or low), cluster.by_id(line.node_id)))
    per_port: dict[int, int] = {}
    for index in range(WRITES):
        key = f"topology:key:{index}"
        slot = key_slot(key)
        owner = next(server for low, high, server in owners if low <= slot <= high)
        owner.call("SET", key, f"value-{index}")
        per_port[owner.port] = per_port.get(owner.port, 0) + 1
    wait_until(f"{cluster.build.id}: replicas caught up", lambda: replicas_caught_up(cluster))
    state = (f"after {WRITES} SETs (keys per master port: {per_port}); every replica's "
             "master_repl_offset equals its master's")
    if cluster.build.has_shards:
        try:
            wait_until("shards offsets", lambda: shard_offsets_settled(cluster), 20)
            state += ", and CLUSTER SHARDS on the node asked shows them equal and nonzero"
        except RuntimeError as error:
            state += f"; CLUSTER SHARDS had not settled: {error}"
        cluster.grab("cluster_shards_after_writes.resp", ("CLUSTER", "SHARDS"), state)
    cluster.history.append(f"{WRITES} SETs")


def replicas_caught_up(cluster: Cluster) -> str | None:
    lines = cluster.view()
    for line in lines:
        if line.role != "replica" or line.node_id in cluster.failed:
            continue
        replica, master = cluster.by_id(line.node_id), cluster.by_id(line.master)
        mine, theirs = replica.info("replication"), master.info("replication")
        if mine.get("master_repl_offset") != theirs.get("master_repl_offset"):
            return f":{replica.port} at {mine.get('master_repl_offset')}"
    return None


def shard_offsets_settled(cluster: Cluster) -> str | None:
    for _shard, nodes in shard_nodes(cluster.asked):
        offsets = {node["replication-offset"] for node in nodes}
        health = {as_text(node["health"]) for node in nodes}
        if len(offsets) != 1 or 0 in offsets or health != {"online"}:
            return f"offsets {offsets}, health {health}"
    return None


# -- cluster: the odd cases (ODD_CASES) ----------------------------------------------------

def case_fail(cluster: Cluster) -> None:
    """SIGKILL a replica (not of the master asked), capture once every node flags it fail,
    then restart it on its nodes.conf and wait until it is back."""
    victim = cluster.nodes[4]
    victim.kill()
    killed = time.monotonic()
    cluster.failed.add(victim.node_id)
    cluster.wait_converged(f"every node flags :{victim.port} fail")
    for name, args in (("cluster_shards_fail.resp", ("CLUSTER", "SHARDS")),
                       ("cluster_nodes_fail.resp", ("CLUSTER", "NODES"))):
        cluster.grab(name, args, f"replica :{victim.port} ({victim.node_id}) killed with "
                     f"SIGKILL {time.monotonic() - killed:.1f} s before; every other node "
                     "flags it fail")
    cluster.failed.discard(victim.node_id)
    victim.start()
    cluster.wait_converged(f":{victim.port} restarted and back")
    cluster.history.append(f"replica :{victim.port} was SIGKILLed, flagged fail by every node, "
                           "then restarted and caught up")


def case_failover(cluster: Cluster) -> None:
    """CLUSTER FAILOVER on the replica of the third master, retried until it is master."""
    old = cluster.nodes[2]
    replica = next(node for node in cluster.nodes if node.alive and any(
        line.master == old.node_id for line in cluster.view(node) if "myself" in line.flags))
    attempts = 0
    for attempts in range(1, 6):  # noqa: B007 - the count goes into meta.json
        _, reply = replica.raw("CLUSTER", "FAILOVER")
        log(f"{cluster.build.id}: CLUSTER FAILOVER on :{replica.port}: {reply!r}")
        try:
            wait_until("failover", lambda: None if next(
                line for line in cluster.view(replica) if "myself" in line.flags
            ).role == "master" else "still a replica", 15)
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError(f"CLUSTER FAILOVER on :{replica.port} did not succeed in 5 tries")
    took = cluster.wait_converged("roles converged after the failover")
    state = (f"after CLUSTER FAILOVER (attempt {attempts}) on replica :{replica.port}: it is "
             f"master of {SLOT_RANGES[2][0]}-{SLOT_RANGES[2][1]} now and the former master "
             f":{old.port} its replica; roles converged on every node {took:.1f} s after the "
             "failover")
    cluster.grab("cluster_nodes_failover.resp", ("CLUSTER", "NODES"), state)
    cluster.grab("cluster_shards_failover.resp", ("CLUSTER", "SHARDS"), state)
    cluster.history.append(f"CLUSTER FAILOVER made :{replica.port} master of "
                           f"{SLOT_RANGES[2][0]}-{SLOT_RANGES[2][1]}, :{old.port} its replica")


def case_slotless(cluster: Cluster) -> None:
    """A 7th, empty node: CLUSTER NODES pipelined right behind the MEET (handshake), then
    the slot-less master once it has joined."""
    new = cluster.fleet.cluster_node("node6")
    new.node_id = new.text("CLUSTER", "MYID")
    meet = ("CLUSTER", "MEET", "127.0.0.1", str(new.port))
    with cluster.asked.conn() as conn:
        conn.send(meet, ("CLUSTER", "NODES"))
        conn.read_raw()
        raw, value = conn.read_raw()
    cluster.nodes.append(new)
    if isinstance(value, bytes) and b"handshake" in value:
        cluster.rec.save("cluster_nodes_handshake.resp", raw, {
            "command": ["CLUSTER", "NODES"], "asked_port": cluster.asked.port,
            "asked_node_id": cluster.asked.node_id,
            "nodes": cluster.describe(parse_nodes(value.decode())),
            "state": cluster.with_history(
                f"sent on the same connection, in the same write, right behind "
                f"{' '.join(meet)} (its reply +OK came first): the new node (its own id is "
                f"{new.node_id}) is listed under a random temporary id with the handshake "
                "flag")})
    else:
        cluster.rec.note("cluster_nodes_handshake.resp",
                         "not captured: no handshake flag right after CLUSTER MEET")
    took = cluster.wait_converged(f"7th node :{new.port} joined")
    state = (f"a 7th node :{new.port} ({new.node_id}), started empty, joined with CLUSTER "
             f"MEET {took:.1f} s before: a master without slots")
    cluster.grab("cluster_shards_slotless.resp", ("CLUSTER", "SHARDS"), state)
    cluster.grab("cluster_nodes_slotless.resp", ("CLUSTER", "NODES"), state)
    cluster.history.append(f"a 7th node :{new.port} joined as a master without slots")


def hostname(server: Server) -> str:
    return f"node-{server.port}.redis.local"


def hostnames_seen(cluster: Cluster, named: list[Server]) -> str | None:
    want = {server.node_id: hostname(server) if server in named else ""
            for server in cluster.nodes}
    for server in cluster.live:
        for _shard, nodes in shard_nodes(server):
            for node in nodes:
                node_id = as_text(node["id"])
                got = as_text(node.get("hostname", b""))
                if got != want[node_id]:
                    return f":{server.port} sees {node_id[:8]} as {got!r}"
    return None


def case_hostnames(cluster: Cluster) -> None:
    """Hostnames announced by the masters only, then by every node; the node asked prefers
    hostnames, then unknown-endpoint."""
    asked = cluster.asked
    masters = [cluster.by_id(line.node_id) for line in cluster.view() if line.role == "master"]
    for server in masters:
        server.call("CONFIG", "SET", "cluster-announce-hostname", hostname(server))
    asked.call("CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname")
    took = wait_until("hostnames of the masters", lambda: hostnames_seen(cluster, masters))
    ports = ", ".join(f":{server.port}" for server in masters)
    state = (f"cluster-announce-hostname node-<port>.redis.local set on the masters only "
             f"({ports}), the replicas have none; the node asked has "
             f"cluster-preferred-endpoint-type hostname; every node saw the hostnames "
             f"{took:.1f} s after they were set")
    cluster.grab("cluster_shards_hostname_missing.resp", ("CLUSTER", "SHARDS"), state)
    cluster.grab("cluster_nodes_hostname_missing.resp", ("CLUSTER", "NODES"), state)
    for server in cluster.nodes:
        if server not in masters:
            server.call("CONFIG", "SET", "cluster-announce-hostname", hostname(server))
    took = wait_until("hostnames of all", lambda: hostnames_seen(cluster, cluster.nodes))
    state = ("cluster-announce-hostname node-<port>.redis.local set on every node (every node "
             f"saw all {took:.1f} s after the last was set); the node asked has "
             "cluster-preferred-endpoint-type hostname")
    cluster.grab("cluster_shards_hostnames.resp", ("CLUSTER", "SHARDS"), state)
    cluster.grab("cluster_nodes_hostnames.resp", ("CLUSTER", "NODES"), state)
    asked.call("CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint")
    state = ("every node announces a hostname node-<port>.redis.local; the node asked has "
             "cluster-preferred-endpoint-type unknown-endpoint")
    cluster.grab("cluster_shards_unknown_endpoint.resp", ("CLUSTER", "SHARDS"), state)
    cluster.grab("cluster_nodes_unknown_endpoint.resp", ("CLUSTER", "NODES"), state)
    asked.call("CONFIG", "SET", "cluster-preferred-endpoint-type", "ip")


ODD: dict[str, Callable[[Cluster], None]] = {
    "fail": case_fail, "failover": case_failover, "slotless": case_slotless,
    "hostnames": case_hostnames}


# -- sentinel ------------------------------------------------------------------------------

SENTINEL_CAPTURES: tuple[tuple[str, Args], ...] = (
    ("sentinel_masters.resp", ("SENTINEL", "MASTERS")),
    ("sentinel_replicas.resp", ("SENTINEL", "REPLICAS", MASTER_NAME)),
    ("sentinel_sentinels.resp", ("SENTINEL", "SENTINELS", MASTER_NAME)),
    ("sentinel_info_sections.resp", ("INFO", "server", "clients", "memory", "persistence",
                                     "stats", "replication", "threads")),
    ("sentinel_info.resp", ("INFO",)),
    ("sentinel_client_list.resp", ("CLIENT", "LIST")),
    ("sentinel_client_no_evict.resp", ("CLIENT", "NO-EVICT", "on")),
    ("sentinel_config_get_maxclients.resp", ("CONFIG", "GET", "maxclients")),
    ("sentinel_multi.resp", ("MULTI",)),
    ("sentinel_cluster_myid.resp", ("CLUSTER", "MYID")),
    ("sentinel_client_setname.resp", ("CLIENT", "SETNAME", "x")),
)


@dataclass
class Watched:
    build: Build
    rec: Recorder
    master: Server
    replica: Server
    sentinels: list[Server]

    def entries(self, *args: str) -> list[dict[str, str]]:
        reply = self.sentinels[0].call(*args)
        assert isinstance(reply, list)
        return [{key: as_text(value) for key, value in pairs(flat).items()} for flat in reply]

    def describe(self) -> list[JsonDict]:
        nodes: list[JsonDict] = []
        for server in (self.master, self.replica):
            role = server.info("replication").get("role", "?")
            nodes.append({"port": server.port, "role": "replica" if role == "slave" else role,
                          "run_id": server.info("server").get("run_id")})
        for server in self.sentinels:
            try:
                sentinel_id = server.text("SENTINEL", "MYID")
            except ServerError:
                sentinel_id = server.info("server").get("run_id", "")
            nodes.append({"port": server.port, "role": "sentinel",
                          "sentinel_id": sentinel_id})
        return nodes

    def save(self, name: str, args: Args, raw: bytes, state: str) -> None:
        asked = self.sentinels[0]
        self.rec.save(name, raw, {"command": list(args), "asked_port": asked.port,
                                  "nodes": self.describe(), "state": state})

    def grab(self, name: str, args: Args, state: str) -> None:
        raw, _ = self.sentinels[0].raw(*args)  # a fresh connection for every command
        self.save(name, args, raw, state)

    def settled(self, master: Server, replica: Server) -> str | None:
        """Every Sentinel: `master` is the master, `replica` its one replica with link ok,
        and it knows the two other Sentinels."""
        for sentinel in self.sentinels:
            with sentinel.conn() as conn:
                masters = conn.call("SENTINEL", "MASTERS")
                replicas = conn.call("SENTINEL", "REPLICAS", MASTER_NAME)
                others = conn.call("SENTINEL", "SENTINELS", MASTER_NAME)
            assert isinstance(masters, list)
            assert isinstance(replicas, list)
            assert isinstance(others, list)
            mine = {key: as_text(value) for key, value in pairs(masters[0]).items()}
            if (mine["port"], mine["flags"]) != (str(master.port), "master"):
                return f":{sentinel.port} master {mine['port']} {mine['flags']}"
            seen = [{key: as_text(value) for key, value in pairs(flat).items()}
                    for flat in replicas]
            wanted = [(str(replica.port), "slave", "ok")]
            got = [(one["port"], one["flags"], one.get("master-link-status")) for one in seen]
            if got != wanted:
                return f":{sentinel.port} replicas {got}"
            if len(others) != 2:
                return f":{sentinel.port} knows {len(others)} other Sentinels"
        link = replica.info("replication").get("master_link_status")
        return None if link == "up" else f"replica :{replica.port} link {link}"


def sentinel_part(build: Build, rec: Recorder) -> None:
    with fleet_of(build) as fleet:
        master = fleet.data_node("master", None)
        replica = fleet.data_node("replica", master.port)
        sentinels = [fleet.sentinel(f"sentinel{index}", master.port) for index in range(3)]
        watched = Watched(build, rec, master, replica, sentinels)
        took = wait_until(f"{build.id}: Sentinels settled",
                          lambda: watched.settled(master, replica))
        log(f"{build.id}: Sentinels settled after {took:.1f} s")
        rec.server("sentinel", sentinels[0].info("server"))
        state = (f"every Sentinel knows the replica and 2 other Sentinels ({took:.1f} s after "
                 "they started); each command on a fresh connection")
        for name, args in SENTINEL_CAPTURES:
            watched.grab(name, args, state)
        sentinel_failover(watched)


def sentinel_failover(watched: Watched) -> None:
    sentinel, old, new = watched.sentinels[0], watched.master, watched.replica
    epoch_before = watched.entries("SENTINEL", "MASTERS")[0]["config-epoch"]
    with sentinel.conn() as subscriber:
        args = ("SUBSCRIBE", "+switch-master")
        raw, _ = subscriber.raw(*args)
        watched.save("sentinel_subscribe_switch_master.resp", args, raw,
                     "reply to SUBSCRIBE +switch-master on a connection of its own")

        def failover() -> str | None:
            reply = sentinel.raw("SENTINEL", "FAILOVER", MASTER_NAME)[1]
            return None if reply == b"OK" else repr(reply)
        wait_until(f"{watched.build.id}: SENTINEL FAILOVER accepted", failover, 60)
        started = time.monotonic()
        raw, value = subscriber.read_raw(timeout=60)
        watched.save("sentinel_switch_master_message.resp", ("SUBSCRIBE", "+switch-master"),
                     raw, f"the message pushed to the subscribed connection "
                     f"{time.monotonic() - started:.1f} s after SENTINEL FAILOVER {MASTER_NAME} "
                     f"(master :{old.port} -> :{new.port}); the roles in `nodes` are what the "
                     "servers reported right after it came (the former master may not have "
                     "been turned into a replica yet)")
    log(f"{watched.build.id}: +switch-master: {value!r}")
    took = wait_until(f"{watched.build.id}: roles swapped", lambda: watched.settled(new, old))
    epoch = watched.entries("SENTINEL", "MASTERS")[0]["config-epoch"]
    state = (f"after SENTINEL FAILOVER {MASTER_NAME}: :{new.port} is master, the former master "
             f":{old.port} its replica, on every Sentinel {took:.1f} s after the "
             f"+switch-master; config-epoch {epoch_before} before, {epoch} now")
    if int(epoch) <= int(epoch_before):
        raise RuntimeError(f"config-epoch did not rise: {state}")
    watched.grab("sentinel_masters_after_failover.resp", ("SENTINEL", "MASTERS"), state)
    watched.grab("sentinel_replicas_after_failover.resp",
                 ("SENTINEL", "REPLICAS", MASTER_NAME), state)


# -- main ----------------------------------------------------------------------------------

def capture_build(build: Build, out: str, command_line: str) -> str:
    rec = Recorder(build, out, command_line)
    try:
        if build.id in CLUSTER_BUILDS or build.id not in SENTINEL_BUILDS:
            cluster_part(build, rec)
        if build.id in SENTINEL_BUILDS:
            sentinel_part(build, rec)
    except BaseException:
        rec.discard()
        raise
    return rec.commit()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="ID",
                        help=f"a build id of {MANIFEST} (repeatable); default: every build of "
                             "CLUSTER_BUILDS and SENTINEL_BUILDS")
    parser.add_argument("--out", default=OUT,
                        help="where the <id>/ directories go (default: tests/data/topology)")
    return parser.parse_args(argv)


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    builds = read_manifest(Build)
    ids = args.only or list(dict.fromkeys((*CLUSTER_BUILDS, *SENTINEL_BUILDS)))
    missing = [build_id for build_id in ids if build_id not in builds]
    if missing:
        sys.exit(f"not in {MANIFEST}: {' '.join(missing)} (run scripts/install-servers)")
    signal.signal(signal.SIGTERM, on_sigterm)
    os.makedirs(args.out, exist_ok=True)
    command_line = " ".join(["python3", os.path.relpath(__file__, ROOT), *argv])
    for build_id in ids:
        final = capture_build(builds[build_id], args.out, command_line)
        log(f"{build_id}: wrote {os.path.relpath(final, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
