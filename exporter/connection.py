"""The poll connection: one long-lived, named connection per target in a redis-py pool.

redis-py's defaults are wrong for this job (RESP3 HELLO, CLIENT SETINFO, ten retries), so the
connections here speak RESP2, never retry, and run our own pipelined handshake:
AUTH + CLIENT SETNAME (+ SELECT), one round trip.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from exporter.config import TargetConfig
from exporter.errors import HandshakeRefused, StepTimeout
from exporter.watchdog import Watchdog

CLIENT_NAME = "redis-connection-exporter"
Command = tuple[str | int | bytes, ...]
Reply = Any  # bytes, int, list or a ResponseError instance (error replies are not raised)


class _TLSConnection(redis.Connection):
    """TCP + TLS with our own SSLContext, so SNI and verification follow the target's tls keys."""

    def __init__(self, *, tls_context: ssl.SSLContext, server_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.tls_context = tls_context
        self.server_name = server_name

    def _connect(self) -> socket.socket:
        sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        try:
            return self.tls_context.wrap_socket(sock, server_hostname=self.server_name)
        except BaseException:
            sock.close()
            raise


def tls_context(target: TargetConfig) -> ssl.SSLContext:
    tls = target.tls
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connection_factory(target: TargetConfig, timeout: float, named: bool,
                       on_connect: Callable[[], None] | None = None
                       ) -> tuple[type[redis.connection.AbstractConnection], dict[str, Any]]:
    """Connection class and keyword arguments for the target's pool and its probes."""
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "protocol": 2,
        "health_check_interval": 0,
        "socket_read_size": 65536,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "redis_connect_func": _handshake(target, named, on_connect),
    }
    endpoint = target.endpoint
    if endpoint.scheme == "unix":
        return redis.UnixDomainSocketConnection, {**kwargs, "path": endpoint.path}
    kwargs.update(host=endpoint.host, port=endpoint.port, socket_keepalive=True)
    if endpoint.scheme == "rediss":
        kwargs.update(tls_context=tls_context(target),
                      server_name=target.tls.server_name or endpoint.host)
        return _TLSConnection, kwargs
    return redis.Connection, kwargs


def _handshake(target: TargetConfig, named: bool, on_connect: Callable[[], None] | None
               ) -> Callable[[Any], None]:
    commands: list[tuple[str, Command]] = []
    if target.password is not None:
        secret = target.password.reveal()
        auth: Command = ("AUTH", target.username, secret) if target.username else ("AUTH", secret)
        commands.append(("AUTH", auth))
    if named:
        commands.append(("SETNAME", (target.commands.client, "SETNAME", CLIENT_NAME)))
    if target.endpoint.db:
        commands.append(("SELECT", ("SELECT", target.endpoint.db)))

    def handshake(conn: Any) -> None:
        conn._parser.on_connect(conn)  # what redis-py's own on_connect does first
        if on_connect is not None:
            on_connect()
        if not commands:
            return
        conn.send_packed_command(conn.pack_commands([cmd for _, cmd in commands]),
                                 check_health=False)
        refused: HandshakeRefused | None = None
        for label, _ in commands:
            try:
                conn.read_response()
            except ResponseError as reply:
                refused = refused or HandshakeRefused(label, reply)
        if refused is not None:
            raise refused

    return handshake


class PollConnection:
    """The target's one held connection; `execute` pipelines commands within one deadline."""

    def __init__(self, target: TargetConfig, timeout: float, watchdog: Watchdog,
                 named: bool = True) -> None:
        self.target = target
        self.timeout = timeout
        self.named = named
        self.connections_created = 0
        self._watchdog = watchdog
        self._in_flight: Any = None
        self._pool = self._new_pool()

    def _count_connect(self) -> None:
        self.connections_created += 1

    def _new_pool(self) -> redis.ConnectionPool:
        cls, kwargs = connection_factory(self.target, self.timeout, self.named,
                                         self._count_connect)
        return redis.ConnectionPool(connection_class=cls, max_connections=1, **kwargs)

    def drop_name(self) -> None:
        """The ACL refused CLIENT SETNAME: reconnect unnamed from now on."""
        self.named = False
        self._pool.disconnect()
        self._pool = self._new_pool()

    def is_connected(self) -> bool:
        return any(getattr(conn, "_sock", None) is not None
                   for conn in getattr(self._pool, "_available_connections", ()))

    def execute(self, commands: Sequence[Command]) -> list[tuple[Reply, float]]:
        """Send `commands` in one round trip; return each reply with the time it was read.

        Error replies come back as ResponseError values, not raised.
        """
        with self._watchdog.guard(self.timeout, self._abort) as guard:
            try:
                return self._execute(commands)
            except Exception as error:
                if guard.expired:
                    raise StepTimeout(f"step exceeded {self.timeout}s") from error
                raise

    def _execute(self, commands: Sequence[Command]) -> list[tuple[Reply, float]]:
        conn: Any = self._pool.get_connection()
        self._in_flight = conn
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[tuple[Reply, float]] = []
            for _ in commands:
                try:
                    reply = conn.read_response(disable_decoding=True)
                except ResponseError as error:
                    reply = error
                replies.append((reply, time.monotonic()))
            return replies
        except BaseException:
            conn.disconnect()
            raise
        finally:
            self._in_flight = None
            self._pool.release(conn)

    def _abort(self) -> None:
        conn = self._in_flight
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    def pool_counts(self) -> tuple[int, int]:
        """(in use, idle) connections of the pool, as redis-py keeps them."""
        in_use = len(getattr(self._pool, "_in_use_connections", ()))
        idle = sum(1 for conn in getattr(self._pool, "_available_connections", ())
                   if getattr(conn, "_sock", None) is not None)
        return in_use, idle

    def close(self) -> None:
        self._abort_quietly()
        self._pool.disconnect()

    def _abort_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self._abort()


def probe(target: TargetConfig, timeout: float, named: bool, watchdog: Watchdog) -> None:
    """Open a fresh connection with the same handshake, PING, close. Raises on failure."""
    cls, kwargs = connection_factory(target, timeout, named)
    conn: Any = cls(**kwargs)

    def abort() -> None:
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    try:
        with watchdog.guard(timeout, abort) as guard:
            try:
                conn.connect()
                conn.send_command("PING", check_health=False)
                conn.read_response()
            except Exception as error:
                if guard.expired:
                    raise StepTimeout(f"probe exceeded {timeout}s") from error
                raise
    finally:
        conn.disconnect()
