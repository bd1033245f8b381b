"""Log lines keep every context value whole, whatever it contains."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.logsetup import configure, kv

ERROR_TEXT = 'ConnectionError: Error 111 connecting to h:6379. "Refused" a=b'


def _emit(fmt: str) -> str:
    stream = io.StringIO()
    configure("info", fmt, stream)
    logging.getLogger("exporter.test").warning(
        "target is down %s", kv(target="cache eu", kind="refused", err=ERROR_TEXT))
    return stream.getvalue().strip()


def test_json_keeps_values_with_spaces_quotes_and_equals() -> None:
    entry = json.loads(_emit("json"))
    assert entry["msg"] == "target is down"
    assert entry["target"] == "cache eu"
    assert entry["err"] == ERROR_TEXT
    assert entry["level"] == "warning"


def test_logfmt_quotes_values_so_they_parse_back() -> None:
    line = _emit("logfmt")
    assert 'msg="target is down"' in line
    assert 'target="cache eu"' in line
    assert "kind=refused" in line
    assert f"err={json.dumps(ERROR_TEXT)}" in line


@pytest.mark.parametrize("value", ["plain", "two words", 'q"uote', "k=v", ""])
def test_kv_round_trips_through_json(value: str) -> None:
    stream = io.StringIO()
    configure("info", "json", stream)
    logging.getLogger("exporter.test").info("event %s", kv(value=value))
    assert json.loads(stream.getvalue())["value"] == value
