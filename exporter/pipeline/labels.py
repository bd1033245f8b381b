"""Raw label tuples (bytes as CLIENT LIST has them) to label values and group records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

from exporter.pipeline.columns import RawCounts, RawLabels
from exporter.pipeline.groups import CHANGES, GroupMeasures, Groups, LabelTuple, merge_into

CHANGES_ZERO = (0,) * len(CHANGES)
# Clients that are idle by design: blocked, pubsub, replica, master, monitor.
IDLE_BY_DESIGN_FLAGS = frozenset("bPSMO")


def client_type(flags: str) -> str:
    """The connection's type, from its flags, in the order DESIGN.md fixes."""
    if "M" in flags:
        return "master"
    if "O" in flags:
        return "monitor"
    if "S" in flags:
        return "replica"
    if "P" in flags:
        return "pubsub"
    return "normal"


def addr_host(addr: str) -> str:
    """`1.2.3.4:5` -> `1.2.3.4`, `[::1]:5` -> `::1`; unix-socket clients -> `unix`."""
    if addr.startswith("/") or not addr:
        return "unix" if addr else ""
    host = addr.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def label_groups(combos: Mapping[RawLabels, RawCounts], group_by: tuple[str, ...]) -> Groups:
    """(raw flags, *raw group values) -> (clients, idle past the threshold, *sums) becomes
    label tuple -> GroupMeasures; raw tuples that decode alike are merged."""
    groups: Groups = {}
    for raw_labels, counts in combos.items():
        labels, idle_by_design, _ = _labels_of(group_by, raw_labels)
        record = GroupMeasures._make((*counts, *CHANGES_ZERO))  # a scanner fills the snapshot
        if idle_by_design and record.idle:
            record = record._replace(idle=0)
        merge_into(groups, labels, record)
    return groups


def combo_labels(combos: Mapping[RawLabels, RawCounts], group_by: tuple[str, ...]
                 ) -> tuple[tuple[LabelTuple, ...], tuple[bool, ...]]:
    """Per raw tuple, in order: its label values, and False for a replica's own link to its
    master (flags M): no accepted connection, so churn leaves it out."""
    decoded = [_labels_of(group_by, raw_labels) for raw_labels in combos]
    return (tuple(labels for labels, _, _ in decoded),
            tuple(not master for _, _, master in decoded))


@lru_cache(maxsize=2048)  # the same raw tuples come back every poll: decode each once
def _labels_of(group_by: tuple[str, ...], raw_labels: RawLabels
               ) -> tuple[LabelTuple, bool, bool]:
    """Label values of one raw tuple, whether its flags make the client idle by design, and
    whether it is a replica's link to its master."""
    flag_text = _text(raw_labels[0])
    labels = tuple(
        client_type(flag_text) if name == "client_type" else _CONVERTERS.get(name, _text)(value)
        for name, value in zip(group_by, raw_labels[1:])
    )
    return labels, bool(IDLE_BY_DESIGN_FLAGS.intersection(flag_text)), "M" in flag_text


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


def _host(value: bytes | None) -> str:
    return addr_host(_text(value))


_CONVERTERS: dict[str, Callable[[bytes | None], str]] = {"addr_host": _host}
