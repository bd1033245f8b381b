"""An HTTP/1.1 server that holds idle and half-open connections without a thread each.

The standard library's servers spend a thread (and block it) per connection: a few thousand
half-open requests then hold thousands of threads until their timeout, and slow `/metrics`.
Here one asyncio loop reads every request head (at most HEAD_TIMEOUT after the connection
opens, or after the first byte of a keep-alive request; an idle keep-alive connection costs a
descriptor and a buffer), and only complete requests reach a small pool of handler threads,
where the routing, basic auth and rendering run as plain blocking code.
(aiohttp and uvicorn have no header read timeout; this is ~250 lines of asyncio instead.)

TLS is asyncio's, with a handshake deadline. A new TLS context (a rotated certificate) applies
to connections accepted from then on: the listener is served again with it, and connections
open already keep the context they were accepted with.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import http.client
import io
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from exporter.logsetup import kv

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0  # the request line and headers, as Go's ReadHeaderTimeout
IDLE_TIMEOUT = 120.0  # between keep-alive requests (Prometheus scrapes every 15 s to 1 m)
HANDSHAKE_TIMEOUT = 10.0
WRITE_TIMEOUT = 60.0
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024  # only /-/reload takes a body, and ignores it
WORKERS = 8
# Open connections past this close the longest-idle ones: held connections cannot take every
# descriptor (poll connections share them), and a new scrape still gets in.
MAX_CONNECTIONS = 4096
SMALL_BODY = 64 * 1024  # sent with its head in one write; larger ones are not copied
SEND_BUFFER = 4 * 1024 * 1024  # a large /metrics leaves in few socket writes
DRAIN_LIMIT = 256 * 1024  # an unread body drained before closing, so the answer is not reset
DRAIN_TIMEOUT = 1.0


@dataclass
class Request:
    """A complete request: its head, and its body when the route takes one (`wants_body`)."""

    method: str
    target: str
    version: str
    headers: http.client.HTTPMessage
    client: str
    body: bytes = field(default=b"", repr=False)
    body_pending: bool = False  # a body was announced and not read


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False
    later: Later | None = None  # answer when something is ready: see Later


@dataclass
class Later:
    """Answer once `ready` is done or `wait` seconds have passed, with `finish(done)` run in a
    handler thread. The waiting request holds no thread (a first scrape of a discovered target
    waits for its first poll this way)."""

    ready: Future[Any]
    wait: float
    finish: Callable[[bool], Response]


Handler = Callable[[Request], Response]


class HTTPFront:
    """Serves `handler` on `address` from a loop thread; `tls()` gives the current context."""

    def __init__(self, address: tuple[str, int], handler: Handler,
                 tls: ssl.SSLContext | None = None, family: int = socket.AF_INET,
                 backlog: int = 256, workers: int = WORKERS,
                 wants_body: Callable[[Request], bool] = lambda _: False) -> None:
        """`wants_body`: whether a request's body is read (on the loop, before a handler
        thread sees it); other bodies are never waited for."""
        self.handler = handler
        self.wants_body = wants_body
        self._tls = tls
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self._sock.bind(address)
            self._sock.listen(backlog)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self.server_address: tuple[Any, ...] = self._sock.getsockname()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="http")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet)
        self._server: asyncio.AbstractServer | None = None
        self._generation = 0  # of the listener's settings: older connections close when idle
        # Open connections, oldest first: the value says whether one waits for a request.
        self._open: dict[asyncio.StreamWriter, bool] = {}
        self._thread: threading.Thread | None = None

    @property
    def tls(self) -> ssl.SSLContext | None:
        return self._tls

    def start(self) -> None:
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="http-loop",
                                        daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._listen(self._tls))
        started.set()
        self._loop.run_forever()

    async def _listen(self, tls: ssl.SSLContext | None) -> None:
        """Serve the listener (a duplicate of it: closing a server closes its socket) with
        `tls`; the server before it stops accepting, its connections stay."""
        previous = self._server
        self._server = await asyncio.start_server(
            self._connection, sock=self._sock.dup(), ssl=tls, limit=MAX_HEAD,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None)
        self._tls = tls
        if previous is not None:
            previous.close()
            self._generation += 1
            for writer, idle in list(self._open.items()):  # the rest close after their answer
                if idle:
                    writer.transport.abort()

    def use_tls(self, tls: ssl.SSLContext | None) -> None:
        """New connections are served with `tls` (None: plain HTTP) once this returns; the
        connections accepted before close after their current request (new settings, such as
        a removed client CA or basic auth users, are never applied to an old session)."""
        asyncio.run_coroutine_threadsafe(self._listen(tls), self._loop).result(timeout=10)

    def shutdown(self) -> None:
        """Stop accepting, close every connection, stop the loop and the handler threads."""
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()

    def server_close(self) -> None:
        self._sock.close()
        if self._thread is None and not self._loop.is_closed():
            self._loop.close()

    # -- one connection ------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self._admit(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        generation = self._generation
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else ""
        try:
            first = True
            while generation == self._generation:
                self._open[writer] = True
                request = await self._read_request(reader, writer, client, first)
                self._open[writer] = False
                if request is None:
                    return
                first = False
                response = await self._loop.run_in_executor(self._pool, self._handle, request)
                if response.later is not None:
                    response = await self._settle(response.later)
                # An error answer closes: refused clients cannot hold keep-alive connections.
                if request.body_pending or response.status >= 400:
                    response.close = True
                await self._write(writer, request, response)
                if response.close:
                    if request.body_pending:
                        await self._drain(reader, writer)
                    return
        except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ssl.SSLError, ValueError):
            return
        finally:
            self._open.pop(writer, None)
            writer.close()

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        """At MAX_CONNECTIONS, close the longest-idle connection to make room."""
        if len(self._open) >= MAX_CONNECTIONS:
            idle = next((held for held, waiting in self._open.items() if waiting), None)
            if idle is not None:
                idle.transport.abort()
                self._open.pop(idle, None)
        self._open[writer] = True

    async def _drain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Closing with a body still arriving makes the kernel reset the connection, and the
        client may never see the answer: say we are done, then discard what comes (bounded)."""
        if not writer.can_write_eof():
            return
        with contextlib.suppress(Exception):
            writer.write_eof()
            received = 0
            deadline = self._loop.time() + DRAIN_TIMEOUT
            while received < DRAIN_LIMIT:
                left = deadline - self._loop.time()
                if left <= 0:
                    break
                chunk = await asyncio.wait_for(reader.read(65536), left)
                if not chunk:
                    break
                received += len(chunk)

    async def _settle(self, later: Later) -> Response:
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(later.ready)),
                                   max(later.wait, 0.0))
            done = True
        except asyncio.TimeoutError:
            done = False

        def finish() -> Response:
            return self._handle_call(lambda: later.finish(done))

        return await self._loop.run_in_executor(self._pool, finish)

    def _handle(self, request: Request) -> Response:
        return self._handle_call(lambda: self.handler(request))

    @staticmethod
    def _handle_call(call: Callable[[], Response]) -> Response:
        try:
            return call()
        except Exception:  # a bug in a route: the client gets 500, the server stays up
            log.exception("http handler failed")
            return Response(500, b"Internal Server Error\n", close=True)

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            client: str, first: bool) -> Request | None:
        if not first:  # a keep-alive connection: idle until the next request starts
            try:
                start = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
            except asyncio.TimeoutError:
                return None
            if not start:
                return None
        else:
            start = b""
        try:
            head = start + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            await self._reject(writer, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return None
        except asyncio.IncompleteReadError:
            return None
        parsed = _parse_head(head, client)
        if isinstance(parsed, HTTPStatus):
            await self._reject(writer, parsed)
            return None
        length = parsed.headers.get("Content-Length", "0").strip() or "0"
        if "Transfer-Encoding" in parsed.headers or not length.isdigit():
            await self._reject(writer, HTTPStatus.BAD_REQUEST)
            return None
        if int(length):
            if int(length) <= MAX_BODY and self.wants_body(parsed):
                try:
                    parsed.body = await asyncio.wait_for(reader.readexactly(int(length)),
                                                         HEAD_TIMEOUT)
                except asyncio.IncompleteReadError:
                    return None
            else:
                parsed.body_pending = True  # never read: answered, then the connection closes
        return parsed

    async def _reject(self, writer: asyncio.StreamWriter, status: HTTPStatus) -> None:
        text = f"{status.value} {status.phrase}\n".encode()
        writer.write(_head(status.value, "text/plain; charset=utf-8", len(text), {}, True) + text)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _write(self, writer: asyncio.StreamWriter, request: Request,
                     response: Response) -> None:
        close = response.close or not _keep_alive(request)
        head = _head(response.status, response.content_type, len(response.body),
                     response.headers, close)
        if request.method == "HEAD" or len(response.body) < SMALL_BODY:
            writer.write(head if request.method == "HEAD" else head + response.body)
        else:  # no copy of a large body (a 1,000-target /metrics is ~20 MB)
            writer.write(head)
            writer.write(memoryview(response.body))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        response.close = close


def _parse_head(head: bytes, client: str) -> Request | HTTPStatus:
    line, _, rest = head.partition(b"\r\n")
    parts = line.split()
    if len(parts) != 3:
        return HTTPStatus.BAD_REQUEST
    try:
        method, target, version = (part.decode("ascii") for part in parts)
    except UnicodeDecodeError:
        return HTTPStatus.BAD_REQUEST
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return (HTTPStatus.HTTP_VERSION_NOT_SUPPORTED if version.startswith("HTTP/")
                else HTTPStatus.BAD_REQUEST)
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException:  # over 100 headers, or a line over 64 KiB
        return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    return Request(method, target, version, headers, client)


def _keep_alive(request: Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _head(status: int, content_type: str, length: int, extra: dict[str, str],
          close: bool) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}", f"Date: {email.utils.formatdate(usegmt=True)}",
             f"Content-Type: {content_type}", f"Content-Length: {length}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Failed TLS handshakes and reset connections are the clients' business: debug only.
    Out of descriptors, asyncio pauses accepting for a second: that one names the limit."""
    error = context.get("exception")
    if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
        log.error("http cannot accept: out of open files %s",
                  kv(limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        return
    log.debug("http connection error %s", kv(msg=context.get("message", ""), err=error))
