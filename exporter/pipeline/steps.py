"""The named steps of a poll: what each sends, and how a round's replies are read by step.

A poll sends the commands of several steps in one pipelined round trip (INFO first, so that
its client buffers never see this poll's own CLIENT LIST reply). `Round` lays the steps out
and hands each step exactly its own replies back: no index arithmetic anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

Command = tuple[str | int | bytes, ...]
# bytes, int, None, a list, or an exception value for an error reply (never raised here).
Reply = Any

# Redis 7.0+ takes several sections in one INFO; before, plain INFO (one section only).
# `threads` (Redis 8.0+, per I/O thread clients, reads and writes) is not in the default set;
# 7.0+ and Valkey ignore a section they do not have. `persistence` for `loading` alone.
INFO_SECTIONS: Command = ("INFO", "server", "clients", "memory", "persistence", "stats",
                          "replication", "threads")
CONFIG_KEYS = ("maxclients", "timeout", "client-output-buffer-limit")


@dataclass(frozen=True)
class PollStep:
    """One named part of a poll and the commands it sends."""

    name: str
    commands: tuple[Command, ...]


NO_EVICT, INFO, CONFIG, CLIENT_LIST = "no_evict", "info", "config", "client_list"
CLUSTER_IDS = "cluster_ids"


def no_evict_step(client: str) -> PollStep:
    """CLIENT NO-EVICT on (7.0+): maxmemory-clients must not evict the poll connection."""
    return PollStep(NO_EVICT, ((client, "NO-EVICT", "on"),))


def info_step(modern: bool) -> PollStep:
    return PollStep(INFO, (INFO_SECTIONS if modern else ("INFO",),))


def config_step(config: str) -> PollStep:
    return PollStep(CONFIG, tuple((config, "GET", key) for key in CONFIG_KEYS))


def cluster_ids_step(shard_ids: bool) -> PollStep:
    """A cluster node's own id, and its shard's (CLUSTER MYSHARDID: 7.2+)."""
    if shard_ids:
        return PollStep(CLUSTER_IDS, (("CLUSTER", "MYID"), ("CLUSTER", "MYSHARDID")))
    return PollStep(CLUSTER_IDS, (("CLUSTER", "MYID"),))


def client_list_step(client: str) -> PollStep:
    return PollStep(CLIENT_LIST, ((client, "LIST"),))


@dataclass(frozen=True)
class Round:
    """Steps sent together in one round trip, in order."""

    steps: tuple[PollStep, ...]

    def commands(self) -> list[Command]:
        return [command for step in self.steps for command in step.commands]

    def names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    def split(self, replies: Sequence[Reply]) -> Iterator[tuple[PollStep, list[Reply]]]:
        """Each step with its replies, in order; a step whose replies did not all arrive
        (the connection broke) and every step after it are left out."""
        start = 0
        for step in self.steps:
            end = start + len(step.commands)
            if end > len(replies):
                return
            yield step, list(replies[start:end])
            start = end
