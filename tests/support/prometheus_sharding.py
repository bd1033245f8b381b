"""A real `prometheus` that scrapes the exporter's /scrape with `hashmod` relabelling.

The multi-target pattern as a user writes it: the target names are the static targets, moved to
`__param_target`, hashed with `hashmod` into a `shard` label, and scraped through the exporter's
address. /api/v1/targets then shows, per target name, the shard Prometheus computed and whether
the scrape worked: that is the cross-check of exporter/sharding.py against Prometheus itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.support.prometheus import Prometheus, PrometheusError, multi_target_job, run_prometheus


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
        "scrape_configs": [multi_target_job(
            f"mod{modulus}", names, exporter_address,
            extra_relabel=[{"source_labels": ["__param_target"], "target_label": "shard",
                            "modulus": modulus, "action": "hashmod"}],
        ) for modulus in moduli],
    }


def scrape_through_prometheus(names: Sequence[str], exporter_address: str,
                              moduli: Sequence[int], timeout: float = 25.0
                              ) -> dict[tuple[int, str], ScrapedTarget]:
    """Run prometheus until every target of every job was scraped once; its view of each,
    keyed by (modulus, name)."""
    with run_prometheus(relabel_config(names, exporter_address, moduli)) as prometheus:
        return _wait_for_scrapes(prometheus, len(names) * len(moduli), timeout)


def _wait_for_scrapes(prometheus: Prometheus, expected: int, timeout: float
                      ) -> dict[tuple[int, str], ScrapedTarget]:
    deadline = time.monotonic() + timeout
    seen: dict[tuple[int, str], ScrapedTarget] = {}
    while time.monotonic() < deadline:
        seen = _targets(prometheus)
        if len(seen) == expected and all(t.health != "unknown" for t in seen.values()):
            return seen
        time.sleep(0.2)
    raise PrometheusError(f"prometheus scraped {len(seen)} of {expected} targets in time")


def _targets(prometheus: Prometheus) -> dict[tuple[int, str], ScrapedTarget]:
    out = {}
    for target in prometheus.active_targets():
        name = target["discoveredLabels"]["__address__"]
        modulus = int(target["labels"]["job"].removeprefix("mod"))
        out[modulus, name] = ScrapedTarget(name, modulus, int(target["labels"]["shard"]),
                                           target["health"], target.get("lastError", ""))
    return out
