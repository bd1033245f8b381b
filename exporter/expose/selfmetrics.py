"""The exporter's global self metrics, on a private prometheus-client registry.

Names, HELP and labels come from the table (expose/families.py); only the values live here.
"""

from __future__ import annotations

import platform
from importlib.metadata import version

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__
from exporter.expose import families
from exporter.expose.families import TargetState

POLL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _gauge(family: families.Family, registry: CollectorRegistry) -> Gauge:
    return Gauge(family.name, family.help, family.labels, registry=registry)


def _counter(family: families.Family, registry: CollectorRegistry) -> Counter:
    return Counter(family.name.removesuffix("_total"), family.help, family.labels,
                   registry=registry)


class SelfMetrics:
    """Global series: poll duration histogram, build info, reload status, targets by state."""

    def __init__(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        duration = families.POLL_DURATION
        self.poll_duration = Histogram(duration.name, duration.help, duration.labels,
                                       buckets=POLL_BUCKETS, registry=self.registry)
        build = _gauge(families.BUILD_INFO, self.registry)
        build.labels(__version__, platform.python_version(), version("redis")).set(1)
        self.reload_ok = _gauge(families.RELOAD_OK, self.registry)
        self.reload_ok.set(1)
        self.web_reload_ok = _gauge(families.WEB_RELOAD_OK, self.registry)
        self.web_reload_ok.set(1)
        rejections = families.DYNAMIC_REJECTIONS
        self.rejections = _counter(rejections, self.registry)
        for reason in families.REJECTIONS:
            self.rejections.labels(reason)
        self.discovery_errors = _counter(families.DISCOVERY_ERRORS, self.registry)
        self.failovers = _counter(families.FAILOVERS, self.registry)
        self.targets = _gauge(families.TARGETS, self.registry)
        for state in (TargetState.UP, TargetState.DOWN):
            self.targets.labels(state).set(0)

    def observe(self, step: str, seconds: float) -> None:
        self.poll_duration.labels(step).observe(seconds)

    def render(self, up: int, down: int) -> bytes:
        self.targets.labels(TargetState.UP).set(up)
        self.targets.labels(TargetState.DOWN).set(down)
        return prometheus_client.generate_latest(self.registry)
