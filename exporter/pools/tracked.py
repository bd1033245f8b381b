"""One instrumented pool: its name, a weak reference to it, and what its labels say."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

# What redis-py raises when get_connection finds no connection (a BlockingConnectionPool's
# timeout, a ConnectionPool at max_connections). A refused server raises the same class
# (ConnectionError) with another message: only the message tells them apart.
NO_CONNECTION_MESSAGES = frozenset({"No connection available.", "Too many connections"})


def server_of(kwargs: dict[str, Any]) -> str:
    """`host:port` (`[v6]:port`) or the socket path, as the exporter spells a target's
    address; "" when the pool does not say (a Sentinel pool: its server is the master)."""
    if kwargs.get("path"):
        return str(kwargs["path"])
    host = kwargs.get("host")
    if not host:
        return ""
    port = kwargs.get("port", 6379)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def server_of_connection(connection: object) -> str:
    """The server a handed-out connection talks to (its public host/port, or path)."""
    path = getattr(connection, "path", None)
    if path:
        return str(path)
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    if not host or port is None:
        return ""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


@dataclass
class TrackedPool:
    """The registry's record of a pool; it never keeps the pool alive."""

    name: str
    pool: weakref.ref[Any]
    client_name: str
    server: str
    max_connections: int
    pushed_server: str | None = None  # multiprocess: the server label last pushed
    children: tuple[Any, ...] = ()  # its wait histogram, timeouts and created counters

    def counts(self) -> tuple[int, int] | None:
        """(idle, in use) from the pool's public count, or None when it is gone or cannot
        count (redis-py before 7.2)."""
        pool = self.pool()
        count = getattr(pool, "get_connection_count", None)
        if pool is None or count is None:
            return None
        idle = used = 0
        for number, attributes in count():
            state = attributes.get("db.client.connection.state")
            if state == "used":
                used += int(number)
            else:
                idle += int(number)
        return idle, used

    def __post_init__(self) -> None:
        # No host in its kwargs (a Sentinel pool): its server comes from its connections.
        # Fixed at instrumentation, so other pools pay one attribute test per checkout.
        self._learns_server = not self.server

    def saw(self, connection: object) -> None:
        """A connection was handed out: Sentinel pools learn their server (the master) here."""
        if not self._learns_server:
            return
        server = server_of_connection(connection)
        if server and server != self.server:
            self.server = server
