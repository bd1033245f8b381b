"""The digest of one poll (pipeline/digest.py) on captured replies: replies read by step,
findings, memory kept between polls. Error replies are the values the poll connection hands
over (redis-py's ResponseError instances); nothing here talks to Redis."""

from __future__ import annotations

from redis.exceptions import ResponseError

from exporter.config.model import ClientListConfig
from exporter.expose.families import Capability, Step
from exporter.pipeline import steps
from exporter.pipeline.digest import DigestSettings, PollDigest, TargetMemory
from exporter.pipeline.groups import column
from exporter.pipeline.steps import Round
from tests.support.golden import NOW, read_data

SETTINGS = DigestSettings(ClientListConfig())
CONFIG_REPLIES = [[b"maxclients", b"777"], [b"timeout", b"3"],
                  [b"client-output-buffer-limit", b"normal 65536 0 0 replica 0 0 0"]]


def digest(memory: TargetMemory, sent: Round, replies: list[object]) -> PollDigest:
    result = PollDigest(memory, SETTINGS, NOW)
    for step, step_replies in sent.split(replies):
        result.take(step, step_replies)
    return result


def full_round(version: str = "redis-7.0") -> tuple[Round, list[object]]:
    sent = Round((steps.no_evict_step("CLIENT"), steps.info_step(True),
                  steps.config_step("CONFIG"), steps.client_list_step("CLIENT")))
    replies: list[object] = [b"OK", read_data(f"{version}/info.txt"), *CONFIG_REPLIES,
                             read_data(f"{version}/client_list.txt")]
    return sent, replies


def test_a_round_is_read_step_by_step_into_the_target_memory() -> None:
    memory = TargetMemory()
    sent, replies = full_round()
    result = digest(memory, sent, replies)
    facts = memory.facts
    assert (facts.version, facts.config_max_clients, facts.server_timeout,
            facts.obuf_hard_limit) == ((7, 0, 15), 777.0, 3.0, 65536.0)
    assert [(finding.capability, finding.refusal) for finding in result.findings] == [
        (Capability.CLIENT_NO_EVICT, None), (Capability.CONFIG, None),
        (Capability.CLIENT_LIST, None), (Capability.CLIENT_IDS_MONOTONIC, None)]
    view = result.view()
    assert sum(column(view.groups or {}, "connections").values()) == 17
    assert view.max_clients == 10000  # INFO's maxclients wins over CONFIG GET (6.2+)
    assert memory.listed is not None and memory.bytes_per_client > 200


def test_replies_cut_short_leave_the_unfinished_steps_out() -> None:
    sent, replies = full_round()
    arrived = [step.name for step, _ in sent.split(replies[:4])]  # CONFIG's 3rd reply lost
    assert arrived == [steps.NO_EVICT, steps.INFO]


def test_after_a_failed_info_nothing_else_of_the_poll_counts() -> None:
    memory = TargetMemory()
    sent, replies = full_round()
    replies[1] = ResponseError("NOPERM this user has no permissions to run the 'info' command")
    result = digest(memory, sent, replies)
    assert result.info is None and result.info_error is replies[1]
    assert [finding.capability for finding in result.findings] == [Capability.CLIENT_NO_EVICT]
    assert memory.facts.version is None and memory.listed is None


def test_refused_config_and_client_list_are_findings_and_drop_the_groups() -> None:
    memory = TargetMemory()
    sent, replies = full_round()
    digest(memory, sent, replies)  # a good poll: groups kept
    denied = ResponseError("NOPERM this user has no permissions to run the 'client|list' "
                           "command")
    replies[2:5] = [ResponseError("ERR unknown command 'CONFIG'")] * 3
    replies[5] = denied
    result = digest(memory, sent, replies)
    refusals = {finding.capability: (finding.step, finding.refusal is not None)
                for finding in result.findings}
    assert refusals[Capability.CONFIG] == (Step.INFO, True)
    assert refusals[Capability.CLIENT_LIST] == (Step.CLIENT_LIST, True)
    assert memory.listed is None and result.view().groups is None


def test_no_evict_does_not_apply_before_7_0() -> None:
    memory = TargetMemory()
    sent = Round((steps.no_evict_step("CLIENT"), steps.info_step(False)))
    refused = ResponseError("ERR Unknown subcommand or wrong number of arguments for "
                            "'NO-EVICT'. Try CLIENT HELP")
    result = digest(memory, sent, [refused, read_data("redis-5.0/info.txt")])
    assert [(finding.capability, finding.refusal, finding.applies)
            for finding in result.findings] == [(Capability.CLIENT_NO_EVICT, None, False)]
