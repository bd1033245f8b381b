"""Raw RESP clients for tests: each is one socket Redis sees as one client line."""

from __future__ import annotations

import socket
from collections.abc import Sequence


def encode(*args: str | int) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RawClient:
    """A connection that sends commands and reads one reply line (or a full bulk) per call."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send(self, *args: str | int) -> None:
        self.sock.sendall(encode(*args))

    def call(self, *args: str | int) -> bytes:
        self.send(*args)
        return self.read_reply()

    def read_reply(self) -> bytes:
        """One RESP reply, returned raw (bulk strings without their header)."""
        line = self._read_line()
        if line[:1] == b"$":
            size = int(line[1:])
            if size < 0:
                return b""
            data = self._read_exact(size + 2)
            return data[:-2]
        if line[:1] == b"*":
            items = [self.read_reply() for _ in range(int(line[1:]))]
            return b"\n".join(items)
        return line

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        self.sock.close()


def open_named(port: int, names: Sequence[str]) -> list[RawClient]:
    clients = []
    for name in names:
        client = RawClient(port)
        assert client.call("CLIENT", "SETNAME", name) == b"+OK"
        clients.append(client)
    return clients


def info_field(client: RawClient, section: str, field: str) -> str:
    text = client.call("INFO", section).decode()
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(field)


def commandstats(port: int, password: str | None = None) -> dict[str, int]:
    """`calls` per command from INFO commandstats on a fresh connection (that INFO itself is
    not counted in its own reply). Redis 7 names subcommands `client|list`."""
    client = RawClient(port)
    try:
        if password is not None:
            assert client.call("AUTH", password) == b"+OK"
        text = client.call("INFO", "commandstats").decode()
    finally:
        client.close()
    calls: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("cmdstat_"):
            stats = dict(item.split("=", 1) for item in rest.split(","))
            calls[name[len("cmdstat_"):]] = int(stats["calls"])
    return calls
