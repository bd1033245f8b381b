"""Which targets this replica polls: `--shard.index` of `--shard.count`, by target name.

The hash is Prometheus' `hashmod` relabel action (model/relabel/relabel.go): the last 8 bytes of
the MD5 of the value, as a big-endian unsigned 64-bit integer, modulo the count. Being the same
function is the point: a Prometheus that shards `/scrape?target=<name>` jobs with `hashmod` on
the target name agrees with the exporters about who owns which target.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

# A StatefulSet pod is `<statefulset>-<ordinal>`; its hostname is the pod name.
_ORDINAL = re.compile(r"-(\d+)$")


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' `hashmod` of `value` (UTF-8, as Go strings are)."""
    digest = hashlib.md5(value.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


@dataclass(frozen=True)
class Shard:
    """This replica's share of the targets; the default (0 of 1) owns every target."""

    index: int = 0
    count: int = 1

    def of(self, name: str) -> int:
        """The shard that owns target `name`."""
        return hashmod(name, self.count)

    def owns(self, name: str) -> bool:
        return self.count == 1 or self.of(name) == self.index

    def select(self, targets: Iterable[T]) -> tuple[T, ...]:
        """The targets this replica polls, in configured order."""
        return tuple(target for target in targets if self.owns(target.name))

    def describe(self) -> str:
        return f"shard {self.index} of {self.count}"


def hostname_ordinal(hostname: str) -> int | None:
    """`redis-connection-exporter-3` (a StatefulSet pod) -> 3; None without `-<n>` at the end.

    Only the first label counts: some nodes report a fully qualified name.
    """
    match = _ORDINAL.search(hostname.split(".", 1)[0])
    return int(match.group(1)) if match else None


def resolve_shard(index: str | None, count: str | None, hostname: str) -> Shard:
    """The shard from the flag values (strings: they may come from the environment).

    Raises ValueError with a message naming the flag when the values cannot work.
    """
    shard_count = _integer("--shard.count", count, default=1)
    if shard_count < 1:
        raise ValueError(f"--shard.count must be at least 1, got {shard_count}")
    if index is None or index == "":
        if shard_count == 1:
            return Shard()
        ordinal = hostname_ordinal(hostname)
        if ordinal is None:
            raise ValueError(f"--shard.count is {shard_count} but --shard.index is not set and "
                             f"the hostname {hostname!r} has no trailing -<ordinal> "
                             "(StatefulSet pod name) to take it from")
        if ordinal >= shard_count:
            raise ValueError(f"--shard.index from the hostname {hostname!r} is {ordinal}, not "
                             f"below --shard.count {shard_count}")
        return Shard(ordinal, shard_count)
    shard_index = _integer("--shard.index", index, default=0)
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"--shard.index must be in 0..{shard_count - 1} "
                         f"(--shard.count is {shard_count}), got {shard_index}")
    return Shard(shard_index, shard_count)


def _integer(flag: str, value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{flag} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class Roster:
    """Every configured target name (all shards) and this replica's shard: who polls what."""

    names: tuple[str, ...]
    shard: Shard = Shard()
    # A set for /scrape's lookups: a tuple scan per request costs ~10 us at 1,000 targets.
    known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", frozenset(self.names))

    def elsewhere(self) -> tuple[str, ...]:
        """Configured targets that another replica polls, in configured order."""
        return tuple(name for name in self.names if not self.shard.owns(name))
