"""RESP2 replies of one poll pipeline, read straight from the socket.

Why not redis-py's parser (hiredis): for a 2.7 MB CLIENT LIST (10,000 clients) it costs ~1 ms
more CPU, and it drains the socket slowly enough that Redis stalls on a full send buffer: the
round trip took ~19.5 ms against ~14.6 ms here (bench/poll_cost.py measures it). A large bulk
reply is received straight into a reused buffer, with no intermediate copies.

Replies look as redis-py's give them with `disable_decoding=True`: bytes, int, None, lists,
and error replies as exception values (redis-py's own classes, so `errors.classify` applies);
the first large reply of a pipeline (CLIENT LIST) is a memoryview of a per-thread buffer,
valid until the same thread reads the next pipeline (the poller digests it at once); a later
large reply of the same pipeline gets a buffer of its own. Socket failures raise redis-py's
TimeoutError or ConnectionError, as its parser would.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

# Bulk strings from this size on are received into their own buffer, not copied out of ours.
LARGE_BULK = 256 * 1024
READ_SIZE = 64 * 1024
CLOSED = "Connection closed by server."


_thread_buffers = threading.local()


def _large_buffer(size: int) -> bytearray:
    """This thread's buffer for large replies, at least `size` bytes.

    Reused because a fresh 2.7 MB buffer per reply costs ~1 ms of page faults here; replaced
    (never resized: views of the old one may still exist) when a reply needs more. Polls run
    on a bounded worker pool, so there are at most `poll.concurrency` of these.
    """
    buffer: bytearray | None = getattr(_thread_buffers, "large", None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size + size // 4)  # room for the reply to grow a little
        _thread_buffers.large = buffer
    return buffer


class ReplyReader:
    """Reads the replies of one pipeline, in order; keep one instance per pipeline."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._start = 0  # first unread byte in _buffer
        self._shared_taken = False  # the thread's large buffer holds a reply of this pipeline

    def read(self) -> Any:
        """The next reply. Protocol errors raise InvalidResponse ("Protocol Error: ...")."""
        try:
            return self._reply()
        except (InvalidResponse, RedisConnectionError, RedisTimeoutError):
            raise
        except TimeoutError as error:  # socket.timeout
            raise RedisTimeoutError("Timeout reading from socket") from error
        except OSError as error:
            raise RedisConnectionError(
                f"Error while reading from socket: {error.args}") from error
        except ValueError as error:  # int() of a malformed length or number
            raise InvalidResponse(f"Protocol Error: {error}") from error

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self._bulk(length)
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"-":
            return BaseParser.parse_error(  # type: ignore[no-untyped-call]
                rest.decode("utf-8", "replace"))
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise InvalidResponse(f"Protocol Error: {line[:40]!r}")

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n", self._start)
            if end >= 0:
                line = bytes(self._buffer[self._start:end])
                self._start = end + 2
                return line
            self._receive()

    def _bulk(self, length: int) -> bytes | memoryview:
        if length >= LARGE_BULK:
            return self._large_bulk(length)
        while len(self._buffer) - self._start < length + 2:
            self._receive()
        data = bytes(self._buffer[self._start:self._start + length])
        self._start += length + 2
        self._expect_crlf(self._start - 2)
        return data

    def _large_bulk(self, length: int) -> memoryview:
        """Received in place: into the thread's reused buffer the first time in a pipeline,
        into a buffer of its own after that (the first one's view must stay intact)."""
        data = bytearray(length + 2) if self._shared_taken else _large_buffer(length + 2)
        self._shared_taken = True
        have = min(len(self._buffer) - self._start, length + 2)
        data[:have] = self._buffer[self._start:self._start + have]
        self._start += have
        with memoryview(data) as view:
            while have < length + 2:
                got = self._sock.recv_into(view[have:length + 2])
                if not got:
                    raise RedisConnectionError(CLOSED)
                have += got
        if data[length:length + 2] != b"\r\n":
            raise InvalidResponse("Protocol Error: bulk string not terminated by CRLF")
        return memoryview(data)[:length]

    def _expect_crlf(self, at: int) -> None:
        if self._buffer[at:at + 2] != b"\r\n":
            raise InvalidResponse("Protocol Error: bulk string not terminated by CRLF")

    def _receive(self) -> None:
        if self._start > READ_SIZE and self._start * 2 > len(self._buffer):
            del self._buffer[:self._start]  # keep the buffer about as big as one reply
            self._start = 0
        chunk = self._sock.recv(READ_SIZE)
        if not chunk:
            raise RedisConnectionError(CLOSED)
        self._buffer += chunk
