"""Which steps a target's next poll sends, decided from what it knows and the time given.

No clock is read here: every decision takes `now` (monotonic seconds), so the CLIENT LIST
interval, its backoff on large servers, the output-buffer guard and the retry of a refused
capability are unit-tested with plain numbers (tests/test_plan.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.config.model import Config, TargetConfig
from exporter.expose.families import Capability
from exporter.pipeline import steps
from exporter.pipeline.server import ServerFacts
from exporter.pipeline.steps import PollStep, Round

CAPABILITY_RETRY_SECONDS = 300.0  # a refused capability is asked for again this much later
OBUF_MARGIN = 1.2  # the next reply may be this much larger than clients x bytes per client


@dataclass(frozen=True)
class ListDecision:
    """Whether CLIENT LIST is due now, the interval it runs on, and whether its reply fits
    the normal-class output-buffer limit (None: not asked, it is not due anyway)."""

    due: bool
    interval: float
    fits: bool | None = None


@dataclass(frozen=True)
class FirstRound:
    """The steps of a poll's first round trip; `deferred`: CLIENT LIST is due but waits for a
    second round trip, after this round's INFO and CONFIG said that its reply fits."""

    round: Round
    deferred: bool


@dataclass
class Planner:
    target: TargetConfig
    config: Config
    last_list: float | None = None  # when the last CLIENT LIST was sent (None: never, or lost)
    retry_at: dict[str, float] = field(default_factory=dict)  # refused capability -> when

    def client_list_interval(self, facts: ServerFacts) -> float:
        """client_list_interval, or the backoff interval on very large servers."""
        backoff = self.config.client_list.backoff
        interval = self.config.poll.client_list_interval
        clients = facts.connected_clients
        if backoff.above_clients is not None and clients is not None \
                and clients > backoff.above_clients:
            return max(backoff.interval, interval)
        return interval

    def client_list(self, now: float, facts: ServerFacts, bytes_per_client: float,
                    capabilities: Mapping[str, int]) -> ListDecision:
        interval = self.client_list_interval(facts)
        if capabilities.get(Capability.CLIENT_LIST) == 0 and \
                now < self.retry_at.get(Capability.CLIENT_LIST, 0.0):
            return ListDecision(False, interval)
        # Half a poll interval of slack, so jitter never pushes CLIENT LIST a whole poll late.
        if self.last_list is not None and \
                now - self.last_list < interval - self.config.poll.interval / 2:
            return ListDecision(False, interval)
        fits = fits_output_buffer(facts, bytes_per_client)
        return ListDecision(fits, interval, fits)

    def config_due(self, now: float, with_list: bool, facts: ServerFacts,
                   capabilities: Mapping[str, int]) -> bool:
        if capabilities.get(Capability.CONFIG) == 0:
            return now >= self.retry_at.get(Capability.CONFIG, 0.0)
        return with_list or not facts.config_loaded

    def first_round(self, fresh: bool, now: float, facts: ServerFacts, with_list: bool,
                    capabilities: Mapping[str, int]) -> FirstRound:
        """The steps, decided once the connection exists (`fresh`: just opened)."""
        if fresh:  # a new connection: its server may have changed under the same address
            facts.config_loaded = False
        commands = self.target.commands
        # CLIENT LIST waits for this poll's INFO and CONFIG when a reply too large for the
        # normal-class output-buffer limit could get us disconnected: on a new connection
        # (limit unknown) or when a limit is set. Otherwise it shares INFO's round trip.
        deferred = with_list and (fresh or facts.obuf_hard_limit > 0)
        chosen: list[PollStep] = []
        if fresh and capabilities.get(Capability.CLIENT_NO_EVICT) != 0 and (
                facts.version is None or facts.modern()):
            chosen.append(steps.no_evict_step(commands.client))
        # CLIENT LIST right after INFO, in every round that has it: the two are one snapshot,
        # and with nothing of ours between them every poll's own commands and bytes fall on
        # the same side of it, so churn and traffic add up to INFO's totals exactly.
        chosen.append(steps.info_step(facts.modern()))
        if with_list and not deferred:
            chosen.append(steps.client_list_step(commands.client))
        # A Sentinel has no CONFIG: its INFO says maxclients (6.2+).
        if not self.target.sentinel and (
                fresh or self.config_due(now, with_list, facts, capabilities)):
            chosen.append(steps.config_step(commands.config))
        # Ids, to label target_info: a node's own word, asked as often as CONFIG and with
        # every CLIENT LIST (a replica that moves to another master changes shard).
        if self.target.source == "cluster" and facts.version is not None and (
                fresh or with_list or not facts.node_id):
            chosen.append(steps.cluster_ids_step(facts.shard_ids()))
        return FirstRound(Round(tuple(chosen)), deferred)

    def refused(self, capability: str, now: float) -> None:
        self.retry_at[capability] = now + CAPABILITY_RETRY_SECONDS


def fits_output_buffer(facts: ServerFacts, bytes_per_client: float) -> bool:
    """A reply over the normal-class hard limit would get the held connection killed."""
    clients = facts.connected_clients
    return not (facts.obuf_hard_limit > 0 and clients is not None
                and clients * bytes_per_client * OBUF_MARGIN >= facts.obuf_hard_limit)
