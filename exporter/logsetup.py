"""Log formatting (logfmt or JSON on stderr). Only the CLI calls `configure`.

Written here rather than pulled in (structlog, python-json-logger): two small formatters on the
standard library are all we need, and they keep the runtime dependencies to the three the
product needs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
# Messages are a plain sentence, then `kv(...)` context: key=value, values JSON-quoted when
# they hold spaces, quotes or `=` (error texts, target names), so they parse back whole.
_CONTEXT = re.compile(r'\s(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def kv(**context: object) -> str:
    """`key=value ...` for a log message; every module logs its context through this."""
    return " ".join(f"{key}={_quote(str(value))}" for key, value in context.items())


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + \
        f".{int(record.msecs):03d}Z"


def _split(message: str) -> tuple[str, list[tuple[str, str]]]:
    first = _CONTEXT.search(message)
    if first is None:
        return message, []
    pairs = _CONTEXT.findall(message[first.start():])
    return message[:first.start()], [(key, _unquote(value)) for key, value in pairs]


def _unquote(value: str) -> str:
    if len(value) > 1 and value.startswith('"') and value.endswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _quote(value: str) -> str:
    if value and not any(ch in value for ch in ' "=\\') and value.isprintable():
        return value
    return json.dumps(value)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, context = _split(record.getMessage())
        pairs = [("ts", _timestamp(record)), ("level", record.levelname.lower()),
                 ("caller", record.name), ("msg", message), *context]
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        return " ".join(f"{key}={_quote(value)}" for key, value in pairs)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, context = _split(record.getMessage())
        entry = {"ts": _timestamp(record), "level": record.levelname.lower(),
                 "caller": record.name, "msg": message, **dict(context)}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str, fmt: str, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
