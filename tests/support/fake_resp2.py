"""A scripted RESP2 server that answers like Redis 5.0.10, for handshake tests.

Redis 5 has no `HELLO`, no `CLIENT SETINFO`, no `CLIENT NO-EVICT` and takes at most one INFO
section. This fake plays that server on 127.0.0.1 (a free port) with the standard library only,
serves the INFO and CLIENT LIST text of `tests/data/redis-5.0/` (captured from a real 5.0.10),
and records every command each connection sent, so that a test can assert on the exact
handshake and poll pipeline. Its error replies are the ones real 5.0.10 gives.

    with FakeRedis5(password="s3cret") as fake:
        ... point the exporter at fake.url ...
        fake.connections()[0].commands  # [("AUTH", "s3cret"), ("CLIENT", "SETNAME", ...), ...]
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import socketserver
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeAlias, cast

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "redis-5.0")
Command = tuple[str, ...]

# Reply values: SimpleString -> `+`, Error -> `-`, int -> `:`, bytes -> `$`, None -> `$-1`,
# list -> `*` (nested values encoded the same way).


class SimpleString(str):
    """A `+...` status reply."""


class Error(str):
    """A `-...` error reply (the text includes its prefix, `ERR ...`)."""


Reply: TypeAlias = "SimpleString | Error | int | bytes | list[Reply] | None"

OK = SimpleString("OK")
DB_COUNT = 16  # Redis' default `databases`
CONFIG = {  # CONFIG GET answers of a default 5.0.10 server
    "maxclients": "10000",
    "timeout": "0",
    "client-output-buffer-limit":
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
}


class ProtocolError(Exception):
    """The client sent something that is not RESP: Redis replies with an error and closes."""


def encode(reply: Reply) -> bytes:
    """One RESP2 reply."""
    if isinstance(reply, SimpleString):
        return b"+" + reply.encode() + b"\r\n"
    if isinstance(reply, Error):
        return b"-" + reply.encode() + b"\r\n"
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if reply is None:
        return b"$-1\r\n"
    return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)


def read_command(stream: io.BufferedIOBase) -> list[bytes] | None:
    """The next request, multibulk (`*2\\r\\n$4\\r\\nPING...`) or inline (`PING\\r\\n`).

    None at end of stream; an empty list for an empty inline line (Redis ignores those).
    """
    line = stream.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()  # inline: whitespace-separated words
    try:
        count = int(line[1:])
    except ValueError:
        raise ProtocolError("invalid multibulk length") from None
    args: list[bytes] = []
    for _ in range(count):
        header = stream.readline()
        if not header.startswith(b"$"):
            raise ProtocolError(f"expected '$', got '{header[:1].decode('latin-1')}'")
        size = int(header[1:])
        data = stream.read(size + 2)  # the argument and its CRLF
        if len(data) < size + 2:
            return None
        args.append(data[:size])
    return args


@dataclass
class ConnectionRecord:
    """One accepted connection: what it sent and what Redis would show in CLIENT LIST."""

    id: int
    addr: str
    fd: int
    accepted: float = field(default_factory=time.monotonic)
    last_command_at: float = field(default_factory=time.monotonic)
    commands: list[Command] = field(default_factory=list)
    name: str = ""
    db: int = 0
    authenticated: bool = False
    closed: bool = False

    def client_list_line(self, now: float, listing: bool) -> str:
        """This connection as a Redis 5.0.10 CLIENT LIST line; `listing`: it is the one that
        sent this CLIENT LIST (5.0.10 shows that command in its query buffer)."""
        last = self.commands[-1][0].lower() if self.commands else "NULL"
        qbuf = "qbuf=26 qbuf-free=32742" if listing else "qbuf=0 qbuf-free=0"
        return (f"id={self.id} addr={self.addr} fd={self.fd} name={self.name} "
                f"age={int(now - self.accepted)} idle={int(now - self.last_command_at)} "
                f"flags=N db={self.db} sub=0 psub=0 multi=-1 {qbuf} "
                f"obl=0 oll=0 omem=0 events=r cmd={last}\n")


class _Server(socketserver.ThreadingTCPServer):
    # Non-daemon handler threads: server_close() joins them, so stop() leaves nothing behind.
    daemon_threads = False
    block_on_close = True

    def __init__(self, fake: FakeRedis5) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def process_request(self, request: socket.socket,  # type: ignore[override]
                        client_address: tuple[str, int]) -> None:
        # Registered here, in the accepting thread, so that stop() sees every socket.
        self.fake._register(request)
        super().process_request(request, client_address)


class _Handler(socketserver.StreamRequestHandler):
    """Serves one client connection until it closes (or the fake stops)."""

    def handle(self) -> None:
        fake = cast(_Server, self.server).fake
        record = fake._accept(self.client_address)
        try:
            while True:
                try:
                    args = read_command(self.rfile)
                except (ProtocolError, ValueError) as error:
                    self.wfile.write(encode(Error(f"ERR Protocol error: {error}")))
                    return
                if args is None:
                    return
                if not args:
                    continue
                reply = fake._answer(record, args)
                if fake.reply_delay:
                    time.sleep(fake.reply_delay)
                if fake.should_close(args):
                    return  # fault injection: drop the connection instead of replying
                self.wfile.write(encode(reply))
        except OSError:
            return  # the peer (or stop()) closed the socket
        finally:
            record.closed = True


class FakeRedis5:
    """A threaded RESP2 server answering like Redis 5.0.10; see the module docstring."""

    VERSION = "5.0.10"  # the redis_version of the INFO it serves

    def __init__(self, password: str | None = None, reply_delay: float = 0.0,
                 close_on: frozenset[str] = frozenset(), close_after: int = 0) -> None:
        """`reply_delay` stalls every reply; `close_on` (e.g. {"CLIENT LIST"}) names commands
        that, after `close_after` normal answers, make the fake close the connection instead
        of replying. Faults real Redis cannot be made to produce on demand."""
        self.password = password
        self.reply_delay = reply_delay
        self.close_on = close_on
        self.close_after = close_after
        self._answered: dict[str, int] = {}
        with open(os.path.join(DATA, "info.txt"), encoding="utf-8") as handle:
            self.info_text = handle.read().replace("\r\n", "\n").replace("\n", "\r\n")
        with open(os.path.join(DATA, "client_list.txt"), encoding="utf-8") as handle:
            self.client_list_text = handle.read()
        self._lock = threading.Lock()
        self._records: list[ConnectionRecord] = []
        self._sockets: list[socket.socket] = []
        self._served_lines: list[int] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> FakeRedis5:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-redis5",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every client socket; wait for the handlers."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # serve_forever returns: no new connections are accepted
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # wakes each handler thread blocked in a read
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()  # closes the listener and joins the handler threads
        for sock in sockets:
            sock.close()  # each handler closed its own already; close() is idempotent
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> FakeRedis5:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    # -- what tests read ---------------------------------------------------------------
    def connections(self) -> list[ConnectionRecord]:
        """Every connection accepted so far, in order (a copy; records are live)."""
        with self._lock:
            return list(self._records)

    def commands(self, record: ConnectionRecord) -> list[Command]:
        """A consistent copy of the commands one connection sent."""
        with self._lock:
            return list(record.commands)

    def served_client_list_lines(self) -> list[int]:
        """How many lines each CLIENT LIST reply had, in order."""
        with self._lock:
            return list(self._served_lines)

    # -- serving -----------------------------------------------------------------------
    def should_close(self, args: Sequence[bytes]) -> bool:
        command = " ".join(arg.decode("utf-8", "replace").upper() for arg in args[:2])
        if command not in self.close_on:
            return False
        with self._lock:
            self._answered[command] = self._answered.get(command, 0) + 1
            return self._answered[command] > self.close_after

    def _register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self, peer: tuple[str, int]) -> ConnectionRecord:
        with self._lock:
            number = len(self._records)
            # Ids and fds above the fixture's, so that our lines never collide with it.
            record = ConnectionRecord(id=100 + number, addr=f"{peer[0]}:{peer[1]}",
                                      fd=100 + number, authenticated=self.password is None)
            self._records.append(record)
        return record

    def _answer(self, record: ConnectionRecord, raw: Sequence[bytes]) -> Reply:
        args = tuple(arg.decode("utf-8", "surrogateescape") for arg in raw)
        with self._lock:
            record.commands.append(args)
            record.last_command_at = time.monotonic()
        name = args[0].lower()
        if name == "auth":
            return self._auth(record, args[1:])
        if not record.authenticated:
            return Error("NOAUTH Authentication required.")
        if name == "ping":
            return SimpleString("PONG") if len(args) == 1 else args[1].encode()
        if name == "client":
            return self._client(record, args[1:])
        if name == "info":
            return self._info(args[1:])
        if name == "config":
            return self._config(args[1:])
        if name == "select":
            return self._select(record, args[1:])
        # HELLO is new in 6.0: Redis 5 has never heard of it.
        beginning = "".join(f"`{arg}`, " for arg in args[1:])
        return Error(f"ERR unknown command `{args[0]}`, with args beginning with: {beginning}")

    def _auth(self, record: ConnectionRecord, args: Command) -> Reply:
        if len(args) != 1:  # AUTH <user> <password> is 6.0+
            return Error("ERR wrong number of arguments for 'auth' command")
        if self.password is None:
            return Error("ERR Client sent AUTH, but no password is set")
        if args[0] != self.password:
            record.authenticated = False
            return Error("ERR invalid password")
        record.authenticated = True
        return OK

    def _client(self, record: ConnectionRecord, args: Command) -> Reply:
        sub = args[0].lower() if args else ""
        if sub == "setname" and len(args) == 2:
            if " " in args[1]:
                return Error("ERR Client names cannot contain spaces, newlines or special "
                             "characters.")
            record.name = args[1]
            return OK
        if sub == "getname" and len(args) == 1:
            return record.name.encode() if record.name else None
        if sub == "list" and len(args) == 1:
            return self._client_list(record)
        if not args:
            return Error("ERR wrong number of arguments for 'client' command")
        # NO-EVICT (7.0), SETINFO (7.2) and anything else: 5.0's generic subcommand error.
        return Error(f"ERR Unknown subcommand or wrong number of arguments for '{args[0]}'. "
                     "Try CLIENT HELP")

    def _client_list(self, listing: ConnectionRecord) -> bytes:
        now = time.monotonic()
        with self._lock:
            own = [rec.client_list_line(now, rec is listing) for rec in self._records
                   if not rec.closed]
            text = self.client_list_text + "".join(own)
            self._served_lines.append(text.count("\n"))
        return text.encode()

    def _info(self, args: Command) -> Reply:
        if len(args) > 1:  # 5.0 takes a single section
            return Error("ERR syntax error")
        if not args or args[0].lower() in ("default", "all", "everything"):
            return self.info_text.encode()
        # One section: its `# Name` block, or nothing for an unknown name.
        for block in self.info_text.split("\r\n\r\n"):
            if block.lower().startswith(f"# {args[0].lower()}\r\n"):
                return (block + "\r\n").encode()
        return b""

    def _config(self, args: Command) -> Reply:
        if len(args) != 2 or args[0].lower() != "get":
            sub = args[0] if args else ""
            return Error(f"ERR Unknown subcommand or wrong number of arguments for '{sub}'. "
                         "Try CONFIG HELP.")
        key = args[1].lower()
        return [key.encode(), CONFIG[key].encode()] if key in CONFIG else []

    def _select(self, record: ConnectionRecord, args: Command) -> Reply:
        if len(args) != 1:
            return Error("ERR wrong number of arguments for 'select' command")
        try:
            db = int(args[0])
        except ValueError:
            return Error("ERR invalid DB index")
        if not 0 <= db < DB_COUNT:
            return Error("ERR DB index is out of range")
        record.db = db
        return OK
