"""What the capture scripts share: the server builds of `.servers/servers.tsv` and RESP2
encoding. Standard library only; imported by `capture.py` and `capture_topology.py` (run
them from the project's root as `python3 -m tests.data.capture...`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MANIFEST = os.path.join(ROOT, ".servers", "servers.tsv")
VALKEY_COMPAT = (7, 2, 4)  # the Redis version Valkey 8 reports and behaves as

Args = tuple[str, ...]
JsonDict = dict[str, object]


@dataclass(frozen=True)
class ManifestBuild:
    """One line of .servers/servers.tsv."""

    id: str
    family: str  # redis or valkey
    version: str  # the product's own version, e.g. 8.1.1
    wrapper: str  # runs like redis-server

    @property
    def compat(self) -> tuple[int, ...]:
        if self.family == "valkey":
            return VALKEY_COMPAT
        return tuple(int(part) for part in self.version.split(".")[:3])


B = TypeVar("B", bound=ManifestBuild)


def read_manifest(build: Callable[[str, str, str, str], B]) -> dict[str, B]:
    builds: dict[str, B] = {}
    with open(MANIFEST, encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                builds[parts[0]] = build(*parts)
    return builds


def encode(args: Args) -> bytes:
    out = b"*%d\r\n" % len(args)
    for arg in args:
        raw = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(raw), raw)
    return out
