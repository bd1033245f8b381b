"""What cluster and Sentinel discovery share: node targets, and asking sources in turn.

A topology is read over one held connection: to the source that answered last, else to the
next that answers (the seeds in order, then the nodes or Sentinels the last topology named),
so a steady refresh opens nothing and a dead seed costs one failed connect per refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from exporter.config.model import Endpoint, SourceEntry, TargetConfig
from exporter.conn.connection import PollConnection
from exporter.conn.errors import classify
from exporter.conn.watchdog import Watchdog
from exporter.logsetup import kv

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class FoundNode:
    """A target a source found, and the topology's view of it for target_info."""

    target: TargetConfig
    node_id: str = ""
    health: str = ""


def node_target(entry: SourceEntry, host: str, port: int, **changes: object) -> TargetConfig:
    """The entry's settings for the node at host:port, named `<entry>/<host>:<port>`."""
    endpoint = Endpoint(entry.template.endpoint.scheme, host=host, port=port)
    return replace(entry.template, name=f"{entry.name}/{endpoint.address}", endpoint=endpoint,
                   **changes)  # type: ignore[arg-type]


def unique(targets: Sequence[TargetConfig]) -> list[TargetConfig]:
    """Candidates in order, each address once."""
    seen: set[str] = set()
    out = []
    for target in targets:
        if target.endpoint.address not in seen:
            seen.add(target.endpoint.address)
            out.append(target)
    return out


class SourceAsker:
    """Asks candidates in turn over a held connection; counts each failed source."""

    def __init__(self, parent: str, timeout: float, watchdog: Watchdog,
                 on_error: Callable[[str], None]) -> None:
        self.parent = parent
        self.timeout = timeout
        self._watchdog = watchdog
        self._on_error = on_error
        self._held: PollConnection | None = None

    @property
    def held(self) -> TargetConfig | None:
        return None if self._held is None else self._held.target

    def first_answer(self, candidates: Sequence[TargetConfig],
                     read: Callable[[PollConnection], T]) -> T | None:
        """`read`'s result from the first candidate that answers; None when none did."""
        ordered = unique(([self._held.target] if self._held else []) + list(candidates))
        for candidate in ordered:
            held = self._held is not None and \
                self._held.target.endpoint.address == candidate.endpoint.address
            conn = self._held if held and self._held else PollConnection(
                candidate, self.timeout, self._watchdog)
            try:
                result = read(conn)
            except Exception as error:
                conn.close()
                if held:
                    self._held = None
                kind = classify(error)
                self._on_error(kind)
                log.warning("topology source failed %s", kv(
                    parent=self.parent, source=candidate.endpoint.address, kind=kind))
                continue
            if not held:
                self.close()
                self._held = conn
            return result
        return None

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
