"""A real `prometheus` that scrapes the exporter's /scrape with `hashmod` relabelling.

The multi-target pattern as a user writes it: the target names are the static targets, moved to
`__param_target`, hashed with `hashmod` into a `shard` label, and scraped through the exporter's
address. /api/v1/targets then shows, per target name, the shard Prometheus computed and whether
the scrape worked: that is the cross-check of exporter/sharding.py against Prometheus itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support.redis_server import free_port, require_binary


@dataclass(frozen=True)
class ScrapedTarget:
    name: str  # the target name, as __param_target
    modulus: int  # of the job's hashmod
    shard: int  # Prometheus' hashmod of the name
    health: str  # "up", "down" or "unknown" (not scraped yet)
    error: str


def relabel_config(names: Sequence[str], exporter_address: str, moduli: Sequence[int]
                   ) -> dict[str, Any]:
    """One job per modulus, each over all `names`, as a user shards /scrape jobs."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": f"mod{modulus}",
            "metrics_path": "/scrape",
            "static_configs": [{"targets": list(names)}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "shard",
                 "modulus": modulus, "action": "hashmod"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": exporter_address},
            ],
        } for modulus in moduli],
    }


def scrape_through_prometheus(names: Sequence[str], exporter_address: str,
                              moduli: Sequence[int], timeout: float = 25.0
                              ) -> dict[tuple[int, str], ScrapedTarget]:
    """Run prometheus until every target of every job was scraped once; its view of each,
    keyed by (modulus, name)."""
    binary = require_binary("prometheus")
    with tempfile.TemporaryDirectory(prefix="prometheus-") as workdir:
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as handle:
            yaml.safe_dump(relabel_config(names, exporter_address, moduli), handle)
        port = free_port()
        with open(os.path.join(workdir, "log"), "wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                 f"--storage.tsdb.path={workdir}/data", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
            try:
                return _wait_for_scrapes(port, len(names) * len(moduli), process, timeout)
            except AssertionError as error:
                with open(os.path.join(workdir, "log"), encoding="utf-8",
                          errors="replace") as tail:
                    raise AssertionError(f"{error}; prometheus log: {tail.read()[-2000:]}"
                                         ) from None
            finally:
                process.terminate()  # by its own handle: only the process this test started
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def _wait_for_scrapes(port: int, expected: int, process: subprocess.Popen[bytes],
                      timeout: float) -> dict[tuple[int, str], ScrapedTarget]:
    deadline = time.monotonic() + timeout
    seen: dict[tuple[int, str], ScrapedTarget] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}")
        seen = _targets(port)
        if len(seen) == expected and all(t.health != "unknown" for t in seen.values()):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"prometheus scraped {len(seen)} of {expected} targets in time")


def _targets(port: int) -> dict[tuple[int, str], ScrapedTarget]:
    url = f"http://127.0.0.1:{port}/api/v1/targets?state=active"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            data = json.load(response)
    except (urllib.error.URLError, OSError):
        return {}  # not listening yet
    out = {}
    for target in data["data"]["activeTargets"]:
        name = target["discoveredLabels"]["__address__"]
        modulus = int(target["labels"]["job"].removeprefix("mod"))
        out[modulus, name] = ScrapedTarget(name, modulus, int(target["labels"]["shard"]),
                                           target["health"], target.get("lastError", ""))
    return out
