"""A Sentinel entry: the masters the Sentinels watch, their replicas, and optionally the
Sentinels themselves, each as its own target.

The Sentinels get their own credentials (`sentinel.username` / `password_file`; unset: none),
never the data nodes'. What a Sentinel believes of a node's role lags (the old master stays
listed until it is converted): roles on /metrics come from each node's own INFO. A master
whose config-epoch rose since the last refresh counts one failover; Sentinels asked in turn
can disagree for a moment, so only a rise above the highest epoch seen counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from exporter.config.model import SourceEntry, TargetConfig
from exporter.conn.connection import PollConnection
from exporter.conn.watchdog import Watchdog
from exporter.logsetup import kv
from exporter.sources.asking import FoundNode, SourceAsker, node_target
from exporter.sources.topology import SentinelEntry, parse_sentinel_entries

log = logging.getLogger(__name__)


class UnknownMaster(ValueError):
    """The Sentinel asked does not monitor a master the entry names."""


@dataclass(frozen=True)
class SentinelView:
    masters: list[SentinelEntry]
    replicas: dict[str, list[SentinelEntry]]
    sentinels: dict[str, list[SentinelEntry]]  # the other Sentinels, per master


class SentinelDiscovery:
    def __init__(self, entry: SourceEntry, timeout: float, watchdog: Watchdog,
                 on_error: Callable[[str], None], on_failover: Callable[[str, int], None]) -> None:
        assert entry.sentinel is not None
        self.entry = entry
        self.source = entry.sentinel
        self._asker = SourceAsker(entry.name, timeout, watchdog, on_error)
        self._on_failover = on_failover
        self._epochs: dict[str, int] = {}  # master name -> highest config-epoch seen
        self._sentinels: list[TargetConfig] = []  # the Sentinels the last view named

    def sentinel_target(self, host: str, port: int) -> TargetConfig:
        """A Sentinel, with the Sentinels' credentials and plain commands only."""
        source = self.source
        return node_target(self.entry, host, port, username=source.username,
                           password=source.password, password_file=source.password_file,
                           password_env=source.password_env, sentinel=True)

    @property
    def current(self) -> TargetConfig:
        """The Sentinel to listen to for +switch-master: the one that answered last."""
        held = self._asker.held
        if held is not None:
            return held
        seed = self.source.seeds[0]
        return self.sentinel_target(seed.host, seed.port)

    def refresh(self) -> list[FoundNode] | None:
        seeds = [self.sentinel_target(seed.host, seed.port) for seed in self.source.seeds]
        view = self._asker.first_answer(seeds + self._sentinels, self._read)
        if view is None:
            return None
        answered = self._asker.held
        assert answered is not None
        found: dict[str, FoundNode] = {}
        sentinels = [answered]
        for master in view.masters:
            self._count_failover(master)
            parent = f"{self.entry.name}/{master.name}"
            for entry in (master, *view.replicas.get(master.name, ())):
                target = node_target(self.entry, entry.ip, entry.port, parent=parent)
                found.setdefault(target.name, FoundNode(target, "", entry.health))
            sentinels += [self.sentinel_target(other.ip, other.port)
                          for other in view.sentinels.get(master.name, ())]
        self._sentinels = sentinels
        if self.source.include_sentinels:
            for sentinel in sentinels:
                found.setdefault(sentinel.name, FoundNode(sentinel))
        return list(found.values())

    def _count_failover(self, master: SentinelEntry) -> None:
        seen = self._epochs.get(master.name)
        parent = f"{self.entry.name}/{master.name}"
        if seen is None:
            self._on_failover(parent, 0)  # a master first seen: its counter starts at 0
        elif master.config_epoch > seen:
            log.info("sentinel failover %s", kv(parent=parent, epoch=master.config_epoch,
                                                master=f"{master.ip}:{master.port}"))
            self._on_failover(parent, 1)
        if seen is None or master.config_epoch > seen:
            self._epochs[master.name] = master.config_epoch

    def _read(self, conn: PollConnection) -> SentinelView:
        [(reply, _)] = conn.execute([("SENTINEL", "MASTERS")], error_replies=True)
        if isinstance(reply, Exception):
            raise reply
        masters = parse_sentinel_entries(reply)
        wanted = self.source.masters
        if wanted:
            by_name = {master.name: master for master in masters}
            missing = [name for name in wanted if name not in by_name]
            if missing:
                raise UnknownMaster(f"not monitored here: {', '.join(missing)}")
            masters = [by_name[name] for name in wanted]
        commands = [command for master in masters for command in (
            ("SENTINEL", "REPLICAS", master.name), ("SENTINEL", "SENTINELS", master.name))]
        replies = [reply for reply, _ in conn.execute(commands, error_replies=True)] \
            if commands else []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return SentinelView(
            masters,
            {master.name: parse_sentinel_entries(replies[2 * index])
             for index, master in enumerate(masters)},
            {master.name: parse_sentinel_entries(replies[2 * index + 1])
             for index, master in enumerate(masters)})

    def close(self) -> None:
        self._asker.close()

