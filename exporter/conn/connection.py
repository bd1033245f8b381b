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
from dataclasses import replace
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry

from exporter.config.model import TargetConfig
from exporter.config.secret import Secret
from exporter.config.tls import tls_context
from exporter.conn.errors import HandshakeRefused, ReplyCut, StepTimeout
from exporter.conn.resp import ReplyReader
from exporter.conn.watchdog import Guard, Watchdog

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


def connection_factory(target: TargetConfig, timeout: float, named: bool,
                       on_connect: Callable[[Any], None] | None = None
                       ) -> tuple[type[redis.connection.AbstractConnection], dict[str, Any]]:
    """Connection class and keyword arguments for the target's pool and its probes."""
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "protocol": 2,
        "health_check_interval": 0,
        # redis-py zero-fills this buffer per connection (64 KiB each came to 62 MiB at 1,000
        # targets, 4 KiB to 4 MiB); it reads handshakes, PINGs, probes and topology replies
        # (more reads for a large one, nothing lost): polls use exporter/conn/resp.py.
        "socket_read_size": 1024,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "redis_connect_func": _handshake(target, named, on_connect),
    }
    endpoint = target.endpoint
    if endpoint.scheme == "unix":
        return redis.UnixDomainSocketConnection, {**kwargs, "path": endpoint.path}
    kwargs.update(host=endpoint.host, port=endpoint.port, socket_keepalive=True)
    if endpoint.scheme == "rediss":
        # `{host}` in server_name: the node's own name, for per-node SNI on a cluster.
        server_name = (target.tls.server_name or "{host}").replace("{host}", endpoint.host)
        kwargs.update(tls_context=tls_context(target.tls), server_name=server_name)
        return _TLSConnection, kwargs
    return redis.Connection, kwargs


def _handshake(target: TargetConfig, named: bool, on_connect: Callable[[Any], None] | None
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
            on_connect(conn)
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


Planner = Callable[[bool], Sequence[Command]]


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
        self._guard: Guard | None = None
        self._pool = self._new_pool()

    def _on_connect(self, conn: Any) -> None:
        """A new socket, before its handshake: the step's deadline applies to it too."""
        self.connections_created += 1
        self._in_flight = conn
        guard = self._guard
        if guard is None:
            return
        remaining = guard.deadline - time.monotonic()
        if guard.expired or remaining <= 0:
            raise StepTimeout(f"connect exceeded {self.timeout}s")
        conn._sock.settimeout(remaining)

    def _new_pool(self) -> redis.ConnectionPool:
        cls, kwargs = connection_factory(self.target, self.timeout, self.named,
                                         self._on_connect)
        return redis.ConnectionPool(connection_class=cls, max_connections=1, **kwargs)

    def reauth(self, password: Secret) -> None:
        """Rotated credentials: the new password for every later (re)connect, and AUTH on the
        held connection in place (no reconnect: at maxclients that could fail).

        Raises what AUTH raised when the server refuses it: the held connection then keeps its
        old authentication, and the caller retries the AUTH at the next poll.
        """
        self.target = replace(self.target, password=password)
        handshake = _handshake(self.target, self.named, self._on_connect)
        self._pool.connection_kwargs["redis_connect_func"] = handshake
        for conn in getattr(self._pool, "_available_connections", ()):
            conn.redis_connect_func = handshake  # redis-py reconnects this same object
        if not self.is_connected():
            return
        username = self.target.username
        auth: Command = (("AUTH", username, password.reveal()) if username
                         else ("AUTH", password.reveal()))
        # A refused AUTH is a reply, not a broken connection: keep the socket (redis-py's
        # AuthenticationError is a ConnectionError, which would otherwise drop it).
        [(reply, _)] = self.execute([auth], error_replies=True)
        if isinstance(reply, Exception):
            raise reply

    def drop_name(self) -> None:
        """The ACL refused CLIENT SETNAME: reconnect unnamed from now on."""
        self.named = False
        self._pool.disconnect()
        self._pool = self._new_pool()

    def is_connected(self) -> bool:
        return any(getattr(conn, "_sock", None) is not None
                   for conn in getattr(self._pool, "_available_connections", ()))

    def execute(self, plan: Planner | Sequence[Command], *, error_replies: bool = False
                ) -> list[tuple[Reply, float]]:
        """Send commands in one round trip; return each reply with the time it was read.

        `plan` may be a function of `fresh` (True when this call had to open a new connection:
        redis-py also reconnects by itself when it finds the held socket dead), so that what
        a new connection needs is decided after the connection exists. Error replies come back
        as ResponseError values; a failure after some replies raises ReplyCut with them.
        """
        with self._watchdog.guard(self.timeout, self._abort) as guard:
            self._guard = guard
            try:
                return self._execute(plan, error_replies)
            except ReplyCut as cut:
                if guard.expired:
                    cut.error = StepTimeout(f"step exceeded {self.timeout}s")
                raise
            except Exception as error:
                if guard.expired:
                    raise StepTimeout(f"step exceeded {self.timeout}s") from error
                raise
            finally:
                self._guard = None

    def _execute(self, plan: Planner | Sequence[Command], error_replies: bool
                 ) -> list[tuple[Reply, float]]:
        created_before = self.connections_created
        try:
            conn: Any = self._pool.get_connection()
        except BaseException:
            self._pool.disconnect()  # never keep a half-set-up socket for the next poll
            raise
        self._in_flight = conn
        replies: list[tuple[Reply, float]] = []
        try:
            conn._sock.settimeout(self.timeout)  # the handshake may have shortened it
            fresh = self.connections_created != created_before
            commands = plan(fresh) if callable(plan) else plan
            if commands:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            reader = ReplyReader(conn._sock)  # not redis-py's parser: see exporter/conn/resp.py
            for _ in commands:
                reply = reader.read()
                if isinstance(reply, RedisConnectionError) and not error_replies:
                    raise reply  # e.g. max number of clients: as redis-py raises it
                replies.append((reply, time.monotonic()))
            return replies
        except BaseException as error:
            conn.disconnect()
            if replies and isinstance(error, Exception):
                raise ReplyCut(replies, error) from error
            raise
        finally:
            self._in_flight = None
            self._pool.release(conn)

    def _abort(self) -> None:
        shutdown_socket(self._in_flight)

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


def shutdown_socket(conn: Any) -> None:
    """Wake a read blocked on `conn` at once (the watchdog's abort); closing is left to
    redis-py, so the file descriptor is never reused under a thread still reading it."""
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)


def probe(target: TargetConfig, timeout: float, named: bool, watchdog: Watchdog) -> None:
    """Open a fresh connection with the same handshake, PING, close. Raises on failure."""
    cls, kwargs = connection_factory(target, timeout, named)
    conn: Any = cls(**kwargs)
    try:
        with watchdog.guard(timeout, lambda: shutdown_socket(conn)) as guard:
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
