"""From the targets being polled to the targets wanted: what to add, remove, replace, rotate.

Pure. A reload, and later any source whose targets change while running (cluster, Sentinel,
discovered), is applied as these changes through the scheduler's add and remove; targets that
did not change keep their poller, their connection and their cadence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from exporter.config.model import TargetConfig


@dataclass(frozen=True)
class TargetChanges:
    added: tuple[TargetConfig, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[TargetConfig, ...] = ()  # same name, other settings: a new poller
    rotated: tuple[TargetConfig, ...] = ()  # only the password changed: AUTH in place

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.replaced or self.rotated)


def target_changes(held: Mapping[str, TargetConfig], wanted: Sequence[TargetConfig],
                   restart_all: bool = False) -> TargetChanges:
    """`held`: each polled target's settings as its connection holds them (rotated
    credentials included); `restart_all`: settings every poller shares changed."""
    added, replaced, rotated = [], [], []
    for target in wanted:
        current = held.get(target.name)
        if current is None:
            added.append(target)
        elif restart_all:
            replaced.append(target)
        elif current == target:
            continue
        elif target.password is not None and current == replace(target,
                                                                password=current.password):
            rotated.append(target)
        else:
            replaced.append(target)
    names = {target.name for target in wanted}
    removed = tuple(name for name in held if name not in names)
    return TargetChanges(tuple(added), removed, tuple(replaced), tuple(rotated))


def keep_rotated_password(target: TargetConfig, held: TargetConfig | None) -> TargetConfig:
    """`held` when it differs from `target` only by a password its own password_file watch
    rotated: a source's topology read must not hand back the password read at start-up."""
    if held is not None and target.password is not None and \
            replace(target, password=held.password) == held:
        return held
    return target
