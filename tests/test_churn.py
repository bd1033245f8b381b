"""Churn and traffic per group between CLIENT LISTs (pipeline/churn.py through
aggregate_client_list), on replies written as a Valkey 8.0 server writes them. Real servers
prove the identities end to end (tests/test_attribution.py)."""

from __future__ import annotations

import pytest

from exporter.config.model import ClientListConfig
from exporter.pipeline.aggregate import AggregateState, ClientAggregate, aggregate_client_list
from exporter.pipeline.churn import UNATTRIBUTED, Totals
from exporter.pipeline.groups import column

pytestmark = pytest.mark.usefixtures("both_scanners")

CONFIG = ClientListConfig(group_by=("name",), name_rewrite=())
OTHER = (UNATTRIBUTED,)
Client = tuple[int, str, int, int, int]  # id, name, tot-net-in, tot-net-out, tot-cmds


def line(cid: int, name: str, net_in: int = 0, net_out: int = 0, cmds: int = 0,
         flags: str = "N") -> str:
    return (f"id={cid} addr=127.0.0.1:{40000 + cid} laddr=127.0.0.1:6379 fd={cid + 8} "
            f"name={name} age=2 idle=2 flags={flags} db=0 sub=0 psub=0 ssub=0 multi=-1 "
            "watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 "
            "omem=0 tot-mem=1928 events=r cmd=ping user=default redir=-1 resp=2 lib-name= "
            f"lib-ver= tot-net-in={net_in} tot-net-out={net_out} tot-cmds={cmds}")


class Server:
    """A scripted server: its clients, and INFO's totals that the test moves along."""

    def __init__(self, run_id: str = "run-a") -> None:
        self.run_id = run_id
        self.received = 0
        self.totals = [0, 0, 0]  # commands, net in, net out
        self.state = AggregateState()

    def poll(self, clients: list[str]) -> ClientAggregate:
        raw = "".join(f"{text}\n" for text in clients).encode()
        totals = Totals(self.run_id, self.received, self.totals[0], self.totals[1],
                        self.totals[2])
        return aggregate_client_list(raw, CONFIG, self.state, totals=totals)


def counters(result: ClientAggregate, field: str) -> dict[str, int]:
    return {labels[0]: value for labels, value in column(result.counters, field).items()}


def test_ids_that_live_across_lists_are_opened_and_closed_in_their_group() -> None:
    server = Server()
    server.received = 3
    first = server.poll([line(3, "app"), line(4, "app"), line(5, "job")])
    assert counters(first, "connections_opened") == {"app": 0, "job": 0, UNATTRIBUTED: 0}
    server.received = 3 + 2 + 4  # ids 6 and 7 alive at the next list, 4 came and went
    second = server.poll([line(3, "app"), line(6, "web"), line(7, "app")])
    assert counters(second, "connections_opened") == {
        "app": 1, "web": 1, "job": 0, UNATTRIBUTED: 4}
    assert counters(second, "connections_closed") == {
        "app": 1, "web": 0, "job": 1, UNATTRIBUTED: 4}
    # The identity: all opened series moved exactly as total_connections_received.
    assert sum(counters(second, "connections_opened").values()) == 2 + 4


def test_a_replicas_link_to_its_master_is_no_connection() -> None:
    server = Server()
    server.received = 1
    server.poll([line(2, "app")])
    second = server.poll([line(2, "app"), line(3, "", flags="M")])
    assert counters(second, "connections_opened") == {"app": 0, "": 0, UNATTRIBUTED: 0}


def test_a_new_run_counts_every_listed_id_as_opened_and_the_old_ones_closed() -> None:
    server = Server()
    server.received = 50
    server.poll([line(40, "app"), line(41, "job")])
    restarted = Server("run-b")
    restarted.state = server.state
    restarted.received = 5  # after the restart: 3 alive, 2 came and went
    result = restarted.poll([line(3, "app"), line(4, "app"), line(5, "web")])
    assert counters(result, "connections_opened") == {
        "app": 2, "web": 1, "job": 0, UNATTRIBUTED: 2}
    assert counters(result, "connections_closed") == {
        "app": 1, "web": 0, "job": 1, UNATTRIBUTED: 2}


def test_a_window_where_a_total_went_down_is_skipped_never_negative() -> None:
    server = Server()
    server.received = 100
    server.poll([line(3, "app")])
    server.received = 2  # CONFIG RESETSTAT
    skipped = server.poll([line(3, "app"), line(9, "app")])
    assert counters(skipped, "connections_opened") == {"app": 0, UNATTRIBUTED: 0}
    server.received = 3  # the next window counts again, from the new baseline
    counted = server.poll([line(3, "app"), line(9, "app"), line(10, "app")])
    assert counters(counted, "connections_opened") == {"app": 1, UNATTRIBUTED: 0}


def test_a_remainder_that_would_be_negative_skips_the_window() -> None:
    """RESETSTAT then enough connects that the total did not go down: more ids than
    connections received."""
    server = Server()
    server.received = 42
    server.poll([line(3, "app")])
    server.received = 43  # 2 new ids, yet the total grew by 1
    result = server.poll([line(3, "app"), line(50, "app"), line(51, "app")])
    assert counters(result, "connections_opened") == {"app": 0, UNATTRIBUTED: 0}


def test_ids_that_go_back_stop_churn_for_good() -> None:
    """A proxy (or Redis Software) hands out ids that are not increasing."""
    server = Server()
    server.received = 10
    server.poll([line(30, "app")])
    server.received = 11
    result = server.poll([line(30, "app"), line(7, "app")])
    assert result.ids_monotonic is False
    assert "connections_opened" not in result.measured
    server.received = 12
    assert server.poll([line(30, "app"), line(7, "app"), line(31, "app")]).ids_monotonic \
        is False


def test_traffic_per_group_plus_the_remainder_equals_the_info_totals() -> None:
    server = Server()
    server.received = 2
    server.totals = [10, 1000, 500]
    first = server.poll([line(3, "app", 600, 300, 6), line(4, "job", 400, 200, 4)])
    assert "network_input_bytes" in first.measured
    assert counters(first, "commands") == {"app": 0, "job": 0, UNATTRIBUTED: 0}  # baseline
    server.received = 3
    # app's id 3 sent 5 more commands, job (4) closed after 2 more, web (5) is new with 3.
    server.totals = [10 + 5 + 2 + 3, 1000 + 250 + 100 + 90, 500 + 60 + 40 + 30]
    second = server.poll([line(3, "app", 850, 360, 11), line(5, "web", 90, 30, 3)])
    assert counters(second, "commands") == {"app": 5, "web": 3, "job": 0, UNATTRIBUTED: 2}
    assert counters(second, "network_input_bytes") == {
        "app": 250, "web": 90, "job": 0, UNATTRIBUTED: 100}
    assert counters(second, "network_output_bytes") == {
        "app": 60, "web": 30, "job": 0, UNATTRIBUTED: 40}


def test_no_traffic_families_where_the_server_has_no_tot_fields() -> None:
    server = Server()
    server.received = 1
    text = line(3, "app").split(" lib-name=")[0]  # Redis 7.0: no tot-* fields
    result = server.poll([text])
    assert "connections_opened" in result.measured
    assert "network_input_bytes" not in result.measured


def test_counters_of_groups_beyond_the_cap_add_up_under_other() -> None:
    server = Server()
    capped = ClientListConfig(group_by=("name",), name_rewrite=(), max_groups=1)
    server.received = 1
    aggregate_client_list(f"{line(3, 'big')}\n{line(4, 'big')}\n".encode(), capped,
                          server.state, totals=Totals("run-a", 2, 0, 0, 0))
    result = aggregate_client_list(
        "".join(f"{line(cid, name)}\n" for cid, name in
                ((3, "big"), (4, "big"), (5, "small"), (6, "tiny"))).encode(),
        capped, server.state, totals=Totals("run-a", 4, 0, 0, 0))
    assert counters(result, "connections_opened") == {
        "big": 0, "__other__": 2, UNATTRIBUTED: 0}
