"""exporter.resp.ReplyReader over a real socket pair: every RESP2 type, replies split across
reads, large bulk strings, and the failures a server or the network can produce."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from redis.exceptions import (
    BusyLoadingError,
    InvalidResponse,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporter.conn.errors import classify
from exporter.conn.resp import LARGE_BULK, ReplyReader


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def send_in_pieces(sock: socket.socket, data: bytes, piece: int) -> threading.Thread:
    def run() -> None:
        for start in range(0, len(data), piece):
            sock.sendall(data[start:start + piece])
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_every_type_in_one_stream(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n$0\r\n\r\n"
                   b"*3\r\n$3\r\nkey\r\n:1\r\n-ERR inner\r\n"
                   b"-NOPERM this user has no permissions\r\n-LOADING loading\r\n")
    reader = ReplyReader(ours)
    assert [reader.read() for _ in range(6)] == [b"OK", 42, b"hello", None, None, b""]
    array = reader.read()
    assert array[:2] == [b"key", 1]
    assert isinstance(array[2], ResponseError) and str(array[2]) == "inner"
    denied = reader.read()
    assert isinstance(denied, NoPermissionError) and classify(denied) == "noperm"
    assert isinstance(reader.read(), BusyLoadingError)


@pytest.mark.parametrize("size", [10, LARGE_BULK - 1, LARGE_BULK, 3 * LARGE_BULK + 7])
def test_bulk_strings_split_across_reads(pair: tuple[socket.socket, socket.socket],
                                         size: int) -> None:
    ours, theirs = pair
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    stream = b"$6\r\nfirst!\r\n" + f"${size}\r\n".encode() + payload + b"\r\n+after\r\n"
    sender = send_in_pieces(theirs, stream, 7919)  # a prime: headers split anywhere
    reader = ReplyReader(ours)
    assert reader.read() == b"first!"
    body = reader.read()
    assert bytes(body) == payload
    assert isinstance(body, memoryview if size >= LARGE_BULK else bytes)
    assert reader.read() == b"after"
    sender.join()


def test_a_later_large_reply_does_not_overwrite_the_first(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """The first large reply of a pipeline (CLIENT LIST) is a view of the thread's reused
    buffer; a second large one in the same pipeline must not be received over it."""
    ours, theirs = pair
    first, second = b"a" * LARGE_BULK, b"b" * LARGE_BULK
    stream = b"".join(f"${len(body)}\r\n".encode() + body + b"\r\n"
                      for body in (first, second)) + b"+OK\r\n"
    sender = send_in_pieces(theirs, stream, 65536)
    reader = ReplyReader(ours)
    listing, other, status = reader.read(), reader.read(), reader.read()
    assert isinstance(listing, memoryview) and bytes(listing) == first
    assert bytes(other) == second and status == b"OK"
    sender.join()


@pytest.mark.parametrize("stream", [b"?what\r\n", b"$abc\r\n", b"*x\r\n", b"$3\r\nabcXY"])
def test_garbage_is_a_protocol_error(pair: tuple[socket.socket, socket.socket],
                                     stream: bytes) -> None:
    ours, theirs = pair
    theirs.sendall(stream)
    with pytest.raises(InvalidResponse) as caught:
        ReplyReader(ours).read()
    assert classify(caught.value) == "protocol"


@pytest.mark.parametrize("stream", [b"", b"$10\r\nabc", f"${LARGE_BULK}\r\nabc".encode()])
def test_closed_mid_reply_is_a_connection_error(pair: tuple[socket.socket, socket.socket],
                                                stream: bytes) -> None:
    ours, theirs = pair
    theirs.sendall(stream)
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(RedisConnectionError, match="Connection closed by server"):
        ReplyReader(ours).read()


def test_silence_is_a_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.settimeout(0.2)
    theirs.sendall(b"$10\r\nabc")
    with pytest.raises(RedisTimeoutError) as caught:
        ReplyReader(ours).read()
    assert classify(caught.value) == "timeout"
