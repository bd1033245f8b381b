"""Real Redis Clusters and Sentinel groups for tests, on free loopback ports.

Timings on a loaded 2-core machine (../shared/reference/topology.md): a 3+3 cluster forms in
2.4-5 s, CLUSTER FAILOVER takes 0.6-1.3 s, a killed replica is flagged `fail` in ~4 s with
`cluster-node-timeout 3000`; a master, a replica and 3 Sentinels are ready in ~1 s. Every
process is started by `start_redis` and stopped by its PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.support.redis_server import RedisServer, free_port, require_binary, start_redis
from tests.support.servers import ServerBuild, build

CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "3000", "--repl-diskless-sync-delay", "0"]


def cluster_port() -> int:
    """A free port whose cluster bus (port + 10000) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def call(client: redis.Redis, *args: str | int) -> Any:
    """One command on a redis-py client (typed: redis-py's own method is not)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def until(condition: Callable[[], object], timeout: float, what: str,
          every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError) as error:
            last = error
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s: {what} (last error: {last})")


@dataclass
class Cluster:
    """A password-protected Redis Cluster; `servers` by port."""

    password: str
    servers: dict[int, RedisServer] = field(default_factory=dict)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(protocol=2, host="127.0.0.1", port=port, password=self.password,
                           socket_timeout=5, decode_responses=True)

    def start_node(self) -> RedisServer:
        server = start_redis(extra_args=[*CLUSTER_ARGS, "--masterauth", self.password],
                             password=self.password, port=cluster_port())
        self.servers[server.port] = server
        return server

    def create(self, masters: int = 3, replicas: int = 1) -> None:
        nodes = [self.start_node() for _ in range(masters * (1 + replicas))]
        cli = require_binary("redis-cli")
        subprocess.run([cli, "--cluster", "create",
                        *(f"127.0.0.1:{node.port}" for node in nodes),
                        "--cluster-replicas", str(replicas), "--cluster-yes",
                        "-a", self.password, "--no-auth-warning"],
                       check=True, capture_output=True, timeout=60)
        self.wait_converged()

    def roles(self, port: int) -> dict[int, tuple[str, str]]:
        """What the node at `port` believes: port -> (role, node id), live nodes only."""
        out = {}
        for line in call(self.client(port), "CLUSTER", "NODES").splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            if "handshake" in flags or "noaddr" in flags:
                continue
            node_port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in flags else "replica"
            out[node_port] = (role, fields[0])
        return out

    def live_ports(self) -> list[int]:
        return [port for port, server in self.servers.items() if server.process is not None]

    def wait_converged(self, timeout: float = 30.0) -> None:
        """Every live node reports cluster_state:ok and the same roles for the live nodes."""
        def agreed() -> bool:
            live = self.live_ports()
            views = []
            for port in live:
                info = call(self.client(port), "CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
                views.append({p: v for p, v in self.roles(port).items() if p in live})
            return all(view == views[0] and len(view) == len(live) for view in views)
        until(agreed, timeout, "cluster roles converged")

    def node_id(self, port: int) -> str:
        return str(call(self.client(port), "CLUSTER", "MYID"))

    def role(self, port: int) -> str:
        return str(self.client(port).info("replication")["role"])

    def replica_of(self, master_port: int) -> int:
        master_id = self.node_id(master_port)
        for line in call(self.client(master_port), "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if fields[3] == master_id:
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"no replica of {master_port}")

    def failover(self, replica_port: int) -> None:
        """CLUSTER FAILOVER on a replica, retried while votes are pending."""
        def promoted() -> bool:
            if self.role(replica_port) == "master":
                return True
            call(self.client(replica_port), "CLUSTER", "FAILOVER")
            time.sleep(1.0)
            return self.role(replica_port) == "master"
        until(promoted, 30.0, f"{replica_port} promoted", every=0.5)
        self.wait_converged()

    def meet(self) -> RedisServer:
        server = self.start_node()
        any_port = next(port for port in self.live_ports() if port != server.port)
        call(self.client(any_port), "CLUSTER", "MEET", "127.0.0.1", server.port)
        until(lambda: all(server.port in self.roles(port) for port in self.live_ports()),
              30.0, "the new node known everywhere")
        return server

    def forget(self, port: int) -> None:
        """Remove a slot-less node: it forgets the others, the others forget it."""
        node_id = self.node_id(port)
        call(self.client(port), "CLUSTER", "RESET", "HARD")
        for other in self.live_ports():
            if other != port:
                call(self.client(other), "CLUSTER", "FORGET", node_id)
        self.servers.pop(port).stop()

    def kill(self, port: int) -> None:
        self.servers[port].stop()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def start_cluster(password: str = "clusterpw") -> Cluster:
    cluster = Cluster(password)
    try:
        cluster.create()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@dataclass
class SentinelGroup:
    """A master and a replica with a password, watched by Sentinels without one."""

    password: str
    master: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer] = field(default_factory=list)
    name: str = "mymaster"

    def data(self, port: int) -> redis.Redis:
        return redis.Redis(protocol=2, host="127.0.0.1", port=port, password=self.password,
                           socket_timeout=5, decode_responses=True)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(protocol=2, host="127.0.0.1", port=port, socket_timeout=5,
                           decode_responses=True)

    def role(self, port: int) -> str:
        return str(self.data(port).info("replication")["role"])

    def master_port(self) -> int:
        reply = call(self.sentinel(self.sentinels[0].port),
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(reply[1])

    def ready(self) -> bool:
        for sentinel in self.sentinels:
            client = self.sentinel(sentinel.port)
            master = call(client, "SENTINEL", "MASTER", self.name)
            # redis-py parses SENTINEL MASTER into a dict of typed values
            fields = master if isinstance(master, dict) else dict(
                zip(master[::2], master[1::2], strict=True))
            if int(fields["num-slaves"]) < 1 or \
                    int(fields["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
        return True

    def failover(self) -> int:
        """SENTINEL FAILOVER; the port of the new master once both nodes agree."""
        old = self.master_port()
        new = self.replica.port if old == self.master.port else self.master.port
        call(self.sentinel(self.sentinels[0].port), "SENTINEL", "FAILOVER",
                                                              self.name)
        until(lambda: self.role(new) == "master" and self.role(old) == "slave"
              and self.master_port() == new, 40.0, "the failover swapped roles", every=0.2)
        return new

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()


def start_sentinel_group(password: str = "datapw", sentinels: int = 3) -> SentinelGroup:
    master = start_redis(password=password, extra_args=["--masterauth", password,
                                                        "--repl-diskless-sync-delay", "0"])
    replica = start_redis(password=password, extra_args=[
        "--masterauth", password, "--replicaof", "127.0.0.1", str(master.port),
        "--repl-diskless-sync-delay", "0"])
    group = SentinelGroup(password, master, replica)
    try:
        for _ in range(sentinels):
            group.sentinels.append(_start_sentinel(master.port, password))
        until(group.ready, 30.0, "every Sentinel knows the replica and the others")
    except BaseException:
        group.stop()
        raise
    return group


def _start_sentinel(master_port: int, password: str) -> RedisServer:
    workdir = tempfile.mkdtemp(prefix="rce-sentinel-")
    port = free_port()
    conf = os.path.join(workdir, "sentinel.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                     f"sentinel monitor mymaster 127.0.0.1 {master_port} 2\n"
                     f"sentinel auth-pass mymaster {password}\n"
                     "sentinel down-after-milliseconds mymaster 3000\n"
                     "sentinel failover-timeout mymaster 10000\n")
    server = RedisServer(port=port, workdir=workdir, args=[conf, "--sentinel"],
                         build=build())
    server.start()
    # Test-only: a shorter info period converts the old master sooner after a failover,
    # and a longer tilt trigger keeps a stalled 2-core machine out of TILT.
    call(redis.Redis(protocol=2, host="127.0.0.1", port=port, socket_timeout=5),
         "SENTINEL", "DEBUG", "info-period", 1000, "publish-period", 500,
        "tilt-trigger", 10000)
    return server


def one_node_cluster(extra_args: tuple[str, ...] = (), port: int | None = None,
                     admin_port: int | None = None, password: str | None = None,
                     server_build: ServerBuild | None = None) -> RedisServer:
    """A cluster of one master holding every slot: the cheapest real CLUSTER SHARDS.
    `admin_port`: where to send the set-up commands (the plain port of a TLS node)."""
    server = start_redis(extra_args=[*CLUSTER_ARGS, *extra_args], port=port or cluster_port(),
                         password=password, server=server_build)
    try:
        client = redis.Redis(protocol=2, host="127.0.0.1", port=admin_port or server.port,
                             password=password, socket_timeout=5, decode_responses=True)
        call(client, "CLUSTER", "ADDSLOTS", *range(16384))  # ADDSLOTSRANGE is 7.0+
        until(lambda: "cluster_state:ok" in call(client, "CLUSTER", "INFO"), 15.0,
              "the one-node cluster ok")
    except BaseException:
        server.stop()
        raise
    return server
