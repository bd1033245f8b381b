"""A real `prometheus` (the Debian binary) on a free loopback port, and its HTTP API.

`run_prometheus` writes a generated config (and any rule files) into a temporary directory that
also holds the TSDB, starts the binary, waits until it answers `/-/ready`, and stops it by its own
process handle when the `with` block ends. With CI=true a missing binary fails (require_binary).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support.redis_server import free_port, require_binary

# One instant-vector sample: its labels and its value.
Sample = tuple[dict[str, str], float]


def multi_target_job(job_name: str, names: Sequence[str], exporter_address: str,
                     extra_relabel: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The multi-target pattern as a user writes it: the target names are the static targets,
    moved to `__param_target` and `instance`, and scraped at the exporter's `/scrape`."""
    return {
        "job_name": job_name,
        "metrics_path": "/scrape",
        "static_configs": [{"targets": list(names)}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            *extra_relabel,
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter_address},
        ],
    }


DASHBOARD = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "grafana", "redis-connection-exporter.json")


def dashboard_queries(target: str = ".*", parent: str = ".+") -> list[str]:
    """Every query of the Grafana dashboard, its variables replaced as Grafana would: the
    defaults are the variables' "All" values."""
    with open(DASHBOARD, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    out: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            out.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    return [expr.replace("$target", target).replace("$parent", parent)
            .replace("$__rate_interval", "1m") for expr in out]


class PrometheusError(AssertionError):
    pass


@dataclass
class Prometheus:
    """A running prometheus: its port, its process and its working directory."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, size: int = 2000) -> str:
        with open(os.path.join(self.workdir, "log"), encoding="utf-8", errors="replace") as log:
            return log.read()[-size:]

    def api(self, path: str, **params: str) -> Any:
        """The `data` of one /api/v1 answer; PrometheusError when it is not "success"."""
        if self.process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self.process.returncode}; "
                                  f"log: {self.log_tail()}")
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:  # 400/422: a bad query, with its error text
            answer = json.load(error)
        if answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {answer.get('errorType')}: "
                                  f"{answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[Sample]:
        """An instant query; a scalar answer comes back as one sample without labels."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise PrometheusError(f"{expr}: unexpected result type {data['resultType']}")

    def query_value(self, expr: str) -> float | None:
        """The value of a query that returns at most one sample."""
        found = self.query(expr)
        if len(found) > 1:
            raise PrometheusError(f"{expr}: {len(found)} samples, expected at most one: {found}")
        return found[0][1] if found else None

    def wait_for(self, expr: str, condition: Callable[[list[Sample]], bool],
                 timeout: float = 20.0) -> list[Sample]:
        """Run `expr` until its samples satisfy `condition`; return them."""
        deadline = time.monotonic() + timeout
        last: list[Sample] = []
        while True:
            last = self.query(expr)
            if condition(last):
                return last
            if time.monotonic() >= deadline:
                raise PrometheusError(f"timed out waiting on {expr!r}; last answer: {last}")
            time.sleep(0.2)

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups


def finite(samples: Sequence[Sample]) -> bool:
    return bool(samples) and all(math.isfinite(value) for _, value in samples)


@contextmanager
def run_prometheus(config: Mapping[str, Any], files: Mapping[str, str] | None = None,
                   ready_timeout: float = 15.0) -> Iterator[Prometheus]:
    """Start prometheus with `config` (a dict, dumped as YAML) and `files` (name -> text, written
    next to it: rule files are named relative to the config). Stopped when the block ends."""
    binary = require_binary("prometheus")
    with tempfile.TemporaryDirectory(prefix="prometheus-") as workdir:
        for name, text in (files or {}).items():
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        config_file = os.path.join(workdir, "prometheus.yml")
        with open(config_file, "w", encoding="utf-8") as handle:
            yaml.safe_dump(dict(config), handle)
        port = free_port()
        with open(os.path.join(workdir, "log"), "wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config_file}",
                 f"--web.listen-address=127.0.0.1:{port}",
                 f"--storage.tsdb.path={workdir}/data", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
            prometheus = Prometheus(port, process, workdir)
            try:
                _wait_ready(prometheus, ready_timeout)
                yield prometheus
            except AssertionError as error:
                raise AssertionError(f"{error}; prometheus log: {prometheus.log_tail()}"
                                     ) from None
            finally:
                process.terminate()  # by its own handle: only the process this test started
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def _wait_ready(prometheus: Prometheus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {prometheus.process.returncode}")
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening, or still starting (503)
        time.sleep(0.1)
    raise PrometheusError(f"prometheus not ready within {timeout} s")
