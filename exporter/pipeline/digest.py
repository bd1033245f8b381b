"""The digest of one poll: the replies of its steps in, what they say out. Pure.

The poller feeds each step's replies to `PollDigest.take` as they arrive (one round trip, or
two when CLIENT LIST had to wait for this poll's INFO), then renders `view()`. The golden
tests feed captured replies through the very same calls. What a target learns from one poll
for the next (server facts, the last CLIENT LIST, the group cap's memory) is its
`TargetMemory`, passed in and updated; capabilities the replies allow or refuse come back as
`Finding`s for the poller's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exporter.config.model import ClientListConfig
from exporter.expose.families import Capability
from exporter.expose.families import Step as MetricStep
from exporter.pipeline import steps
from exporter.pipeline.aggregate import (
    AggregateState,
    ClientAggregate,
    aggregate_client_list,
    client_list_spec,
)
from exporter.pipeline.churn import Totals
from exporter.pipeline.columns import ClientListSpec, Histogram
from exporter.pipeline.groups import Groups
from exporter.pipeline.info import connections_in_use, effective_max_clients, parse_info
from exporter.pipeline.server import ServerFacts
from exporter.pipeline.steps import PollStep, Reply

BYTES_PER_CLIENT_GUESS = 280.0  # CLIENT LIST reply size per client before we measured one


@dataclass(frozen=True)
class RedisView:
    """What the last successful poll learned from Redis: all that rendering needs."""

    info: Mapping[str, str]
    max_clients: float | None
    start_time: float | None
    groups: Groups | None = None  # None: no CLIENT LIST data (denied, skipped, not yet)
    group_by: tuple[str, ...] = ()
    measured: tuple[str, ...] = ()  # the GroupMeasures fields the server reports
    counters: Groups = field(default_factory=dict)  # churn and traffic added up
    histograms: Mapping[str, Histogram] = field(default_factory=dict)


@dataclass(frozen=True)
class DigestSettings:
    """A target's settings that the digest reads; fixed while its poller lives."""

    client_list: ClientListConfig
    max_clients: int | None = None  # the target's override of what the server reports
    spec: ClientListSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", client_list_spec(self.client_list))


@dataclass
class TargetMemory:
    """What one target's polls carry to the next (the poller owns it; the digest updates it)."""

    facts: ServerFacts = field(default_factory=ServerFacts)
    listed: ClientAggregate | None = None  # the last CLIENT LIST; None: not served
    aggregate: AggregateState = field(default_factory=AggregateState)
    bytes_per_client: float = BYTES_PER_CLIENT_GUESS

    def forget_list(self) -> None:
        """Drop the families from CLIENT LIST: never served stale."""
        self.listed = None


class IdsNotIncreasing(Exception):
    """Why a target's churn is not counted (a proxy or Redis Software: ids not increasing)."""


@dataclass(frozen=True)
class Finding:
    """A capability the replies showed: allowed (`refusal` None) or refused with this reply.
    A refusal counts as an error of `step` (the metric's step label) and is asked for again
    later; with `step` None it is only noted. `applies` False: this server cannot have the
    capability at all (its version predates it), so it is neither allowed nor missing."""

    capability: str
    step: str | None
    refusal: Reply = None
    applies: bool = True


class PollDigest:
    """One poll's replies, step by step. After a failed INFO the rest of the poll is ignored:
    `redis_up` is 0 and nothing else of this poll counts."""

    def __init__(self, memory: TargetMemory, settings: DigestSettings, now_wall: float) -> None:
        self.memory = memory
        self.settings = settings
        self.now_wall = now_wall
        self.info: dict[str, str] | None = None
        self.info_error: Reply = None
        self.findings: list[Finding] = []
        self.listed: ClientAggregate | None = None  # this poll's CLIENT LIST, when read

    def take(self, step: PollStep, replies: Sequence[Reply]) -> None:
        if self.info_error is not None:
            return
        if step.name == steps.NO_EVICT:
            self._finding(Capability.CLIENT_NO_EVICT, None, replies[0])
        elif step.name == steps.INFO:
            self._info(replies[0])
        elif step.name == steps.CONFIG:
            self._config(replies)
        elif step.name == steps.CLIENT_LIST:
            self._client_list(replies[0])
        elif step.name == steps.CLUSTER_IDS:
            self.memory.facts.learn_cluster_ids(list(replies))
        else:
            raise ValueError(f"no digest for step {step.name!r}")

    def _finding(self, capability: str, step: str | None, reply: Reply) -> bool:
        refused = isinstance(reply, Exception)
        self.findings.append(Finding(capability, step, reply if refused else None))
        return not refused

    def _info(self, reply: Reply) -> None:
        if isinstance(reply, Exception):
            self.info_error = reply
            return
        self.info = parse_info(reply)
        facts = self.memory.facts
        facts.learn_info(self.info, self.now_wall)
        if facts.version is not None and not facts.modern():
            # CLIENT NO-EVICT (and client eviction itself) came with 7.0: a new connection
            # asked before its version was known, and the refusal says nothing.
            self.findings = [finding for finding in self.findings
                             if finding.capability != Capability.CLIENT_NO_EVICT]
            self.findings.append(Finding(Capability.CLIENT_NO_EVICT, None, applies=False))

    def _config(self, replies: Sequence[Reply]) -> None:
        refused = next((reply for reply in replies if isinstance(reply, Exception)), None)
        if not self._finding(Capability.CONFIG, MetricStep.INFO, refused):
            return
        values = {key: _text(reply[1]) for key, reply in zip(steps.CONFIG_KEYS, replies)
                  if isinstance(reply, list) and len(reply) >= 2}
        self.memory.facts.learn_config(values)

    def _client_list(self, reply: Reply) -> None:
        memory = self.memory
        if not self._finding(Capability.CLIENT_LIST, MetricStep.CLIENT_LIST, reply):
            memory.forget_list()
            return
        settings = self.settings
        totals = Totals.of(self.info) if self.info is not None else None  # same snapshot
        listed = aggregate_client_list(reply, settings.client_list, memory.aggregate,
                                       settings.spec, totals)
        memory.listed = self.listed = listed
        if listed.ids_monotonic is not None:
            self.findings.append(Finding(
                Capability.CLIENT_IDS_MONOTONIC, None,
                None if listed.ids_monotonic else IdsNotIncreasing(
                    "a new client id was not above the previous largest: no churn")))
        memory.bytes_per_client = listed.reply_bytes / max(listed.clients, 1)

    def view(self) -> RedisView:
        """What to render, after a successful INFO; also records the headroom it shows."""
        assert self.info is not None, "no view without INFO"
        info, memory = self.info, self.memory
        facts = memory.facts
        max_clients = effective_max_clients(self.settings.max_clients, info,
                                            facts.config_max_clients)
        used = connections_in_use(info)
        facts.headroom = (max_clients - used if max_clients is not None and used is not None
                          else None)
        listed = memory.listed
        return RedisView(
            info=info, max_clients=max_clients, start_time=facts.start_time,
            groups=listed.groups if listed else None,
            group_by=self.settings.client_list.group_by,
            measured=listed.measured if listed else (),
            histograms=listed.histograms if listed else {},
            counters=listed.counters if listed else {})


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
