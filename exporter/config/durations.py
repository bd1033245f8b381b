"""Prometheus duration syntax (`15s`, `1m30s`, `500ms`) to seconds."""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
# Units must appear at most once and from largest to smallest, as in Prometheus.
_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")


def parse_duration(text: str) -> float:
    """Return the duration in seconds, or raise ValueError with a short reason."""
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (use Prometheus syntax such as 15s, 1m, 1h30m)")
    return sum(
        int(value) * _UNIT_SECONDS[unit]
        for unit, value in zip(_ORDER, match.groups())
        if value is not None
    )
