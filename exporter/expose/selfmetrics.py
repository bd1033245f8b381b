"""The exporter's global self metrics, on a private prometheus-client registry."""

from __future__ import annotations

import platform
from importlib.metadata import version

import prometheus_client
from prometheus_client import CollectorRegistry, Gauge, Histogram

from exporter import __version__
from exporter.expose import families as metrics

POLL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SelfMetrics:
    """Global series: poll duration histogram, build info, reload status, targets by state."""

    def __init__(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.poll_duration = Histogram(
            metrics.GLOBAL_POLL_DURATION,
            "Duration of poll steps (info, client_list, probe) across all targets.",
            ["step"], buckets=POLL_BUCKETS, registry=self.registry)
        build = Gauge(metrics.GLOBAL_BUILD_INFO, "Version of the exporter and its runtime, "
                      "always 1.", ["version", "python_version", "redis_py_version"],
                      registry=self.registry)
        build.labels(__version__, platform.python_version(), version("redis")).set(1)
        self.reload_ok = Gauge(metrics.GLOBAL_RELOAD_OK, "1 if the last configuration "
                               "load succeeded.", registry=self.registry)
        self.reload_ok.set(1)
        self.targets = Gauge(metrics.GLOBAL_TARGETS, "Configured targets by the state of "
                             "their last poll (not yet polled targets are not counted).",
                             ["state"], registry=self.registry)
        for state in ("up", "down"):
            self.targets.labels(state).set(0)

    def observe(self, step: str, seconds: float) -> None:
        self.poll_duration.labels(step).observe(seconds)

    def render(self, up: int, down: int) -> bytes:
        self.targets.labels("up").set(up)
        self.targets.labels("down").set(down)
        return prometheus_client.generate_latest(self.registry)
