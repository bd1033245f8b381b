"""Static targets: the ones the configuration lists (or --redis.addr), in this replica's shard."""

from __future__ import annotations

import logging

from exporter.config.model import Config, TargetConfig
from exporter.logsetup import kv
from exporter.sharding import Shard

log = logging.getLogger(__name__)


def static_targets(config: Config, shard: Shard) -> tuple[TargetConfig, ...]:
    """The configured targets this replica polls, in configured order."""
    owned = shard.select(config.targets)
    if config.targets and not owned:  # legal (more replicas than targets), but say so
        log.warning("no configured target is in this shard %s", kv(
            shard=f"{shard.index}/{shard.count}", configured=len(config.targets)))
    return owned
