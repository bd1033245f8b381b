"""Read the exporter's /metrics with an independent parser (prometheus-client's)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def fetch(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def samples(text: str) -> list[Sample]:
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            out.append((item.name, dict(item.labels), float(item.value)))
    return out


def values(text: str, name: str, /, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Samples of metric `name` whose labels include `labels`."""
    return [(lab, val) for metric, lab, val in samples(text)
            if metric == name and all(lab.get(k) == v for k, v in labels.items())]


def value(text: str, name: str, /, **labels: str) -> float | None:
    found = values(text, name, **labels)
    if len(found) > 1:
        raise AssertionError(f"{name} {labels}: {len(found)} samples, expected one")
    return found[0][1] if found else None


def wait_for(condition: Callable[[], object], timeout: float = 20.0,
             interval: float = 0.1, message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}; last value: {last!r}")


def wait_for_value(url: str, name: str, condition: Callable[[float | None], bool], /,
                   timeout: float = 20.0, **labels: str) -> str:
    """Poll `url` until the sample `name{labels}` satisfies `condition`; return that body."""
    found: list[str] = []

    def check() -> bool:
        text = fetch(url)
        if condition(value(text, name, **labels)):
            found.append(text)
            return True
        return False

    wait_for(check, timeout=timeout, message=f"{name}{labels}")
    return found[-1]


def body_when(url: str, check: Callable[[str], object], message: str,
              timeout: float = 30.0) -> str:
    """The first body of `url` for which `check` holds."""
    found: list[str] = []

    def ok() -> bool:
        body = fetch(url)
        if check(body):
            found.append(body)
            return True
        return False

    wait_for(ok, timeout=timeout, message=message)
    return found[-1]
