"""Maps what went wrong to the closed set of `kind` values (expose/families.py: `Kind`).
No free text reaches a label."""

from __future__ import annotations

import errno
import resource
import socket
import ssl

from redis import exceptions as redis_errors

from exporter.expose.families import Kind

# Prefixes of Redis error replies, in the order they are tested.
_REPLY_KINDS = (
    ("WRONGPASS", Kind.AUTH),
    ("NOAUTH", Kind.AUTH),
    ("ERR invalid password", Kind.AUTH),
    ("ERR AUTH", Kind.AUTH),
    ("ERR Client sent AUTH", Kind.AUTH),
    ("NOPERM", Kind.NOPERM),
    ("ERR max number of clients", Kind.MAXCLIENTS),
    ("LOADING", Kind.LOADING),
    ("BUSY", Kind.BUSY),
    ("MASTERDOWN", Kind.OTHER),
    ("ERR unknown command", Kind.UNSUPPORTED),
    ("ERR unknown subcommand", Kind.UNSUPPORTED),
    ("ERR Unknown subcommand", Kind.UNSUPPORTED),
    ("ERR syntax error", Kind.UNSUPPORTED),
)


# Both derive from redis-py's errors: raised inside a connect, redis-py then closes the socket
# instead of handing a half-set-up connection back to the pool.
# An error reply in a pipeline's replies: read as a value, not raised (see conn/resp.py).
ErrorReply = redis_errors.ResponseError


class StepTimeout(redis_errors.TimeoutError):
    """A poll step overran `poll.timeout` and its socket was closed by the watchdog."""


class HandshakeRefused(redis_errors.ConnectionError):
    """The server refused a handshake command; `command` says which (AUTH, SETNAME, SELECT)."""

    def __init__(self, command: str, reply: redis_errors.ResponseError) -> None:
        super().__init__(f"{command}: {reply}")
        self.command = command
        self.reply = reply


class ReplyCut(Exception):
    """The connection failed after some replies of a pipeline had been read.

    `replies` holds those (an INFO that arrived before a failed CLIENT LIST still counts);
    `error` is what cut the rest.
    """

    def __init__(self, replies: list[tuple[object, float]], error: BaseException) -> None:
        super().__init__(str(error))
        self.replies = replies
        self.error = error


def reply_text(error: BaseException) -> str:
    """The error reply as Redis sent it: redis-py strips codes such as NOPERM into an attribute."""
    code = getattr(error, "status_code", None)
    text = str(error)
    return f"{code} {text}" if code and not text.startswith(str(code)) else text


def classify_reply(message: str) -> str:
    for prefix, kind in _REPLY_KINDS:
        if message.startswith(prefix):
            return kind
    return Kind.OTHER


def classify(error: BaseException) -> str:
    """The `kind` of an exception raised while talking to Redis."""
    if isinstance(error, ReplyCut):
        return classify(error.error)
    if isinstance(error, StepTimeout):
        return Kind.TIMEOUT
    if isinstance(error, HandshakeRefused):
        return classify_reply(reply_text(error.reply))
    if isinstance(error, redis_errors.AuthenticationError):
        return Kind.AUTH
    if isinstance(error, redis_errors.BusyLoadingError):
        return Kind.LOADING
    if isinstance(error, redis_errors.ResponseError):
        return classify_reply(reply_text(error))
    if isinstance(error, (redis_errors.TimeoutError, socket.timeout, TimeoutError)):
        return Kind.TIMEOUT
    if isinstance(error, ssl.SSLError) or _caused_by(error, ssl.SSLError):
        return Kind.TLS
    if isinstance(error, redis_errors.ConnectionError):
        return _classify_connection_error(error)
    if isinstance(error, (redis_errors.InvalidResponse, redis_errors.DataError)):
        return Kind.PROTOCOL
    if isinstance(error, ConnectionRefusedError):
        return Kind.REFUSED
    return Kind.OTHER


def _classify_connection_error(error: redis_errors.ConnectionError) -> str:
    text = str(error)
    if "max number of clients" in text:
        return Kind.MAXCLIENTS
    if f"Error {errno.ECONNREFUSED} " in text or "Connection refused" in text:
        return Kind.REFUSED
    if "No such file or directory" in text or f"Error {errno.ENOENT} " in text:
        return Kind.REFUSED  # unix socket missing: nothing listens there
    if "SSL" in text or "certificate" in text:
        return Kind.TLS
    if "Timeout" in text or "timed out" in text:
        return Kind.TIMEOUT
    if "Protocol Error" in text:
        return Kind.PROTOCOL
    return Kind.OTHER


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen = 0
    cause = error.__cause__ or error.__context__
    while cause is not None and seen < 5:
        if isinstance(cause, kind):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def is_tls_eof(error: BaseException) -> bool:
    """EOF or reset during a TLS handshake: at maxclients Redis closes before TLS starts."""
    text = str(error)
    return any(marker in text for marker in ("EOF occurred", "UNEXPECTED_EOF",
                                              "Connection reset", "Connection closed"))


def out_of_files_hint(error: BaseException) -> str:
    """For EMFILE/ENFILE anywhere in the chain (redis-py wraps them in a ConnectionError whose
    kind is `other`): words that name the limit, so the log says what to raise. Else ""."""
    seen: BaseException | None = error
    for _ in range(6):
        if seen is None:
            return ""
        if isinstance(seen, OSError) and seen.errno == errno.EMFILE:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return (f" (this process reached its open files limit, {limit}: raise LimitNOFILE "
                    "or ulimit -n)")
        if isinstance(seen, OSError) and seen.errno == errno.ENFILE:
            return " (the system's open files limit, fs.file-max, is reached)"
        seen = seen.__cause__ or seen.__context__
    return ""
