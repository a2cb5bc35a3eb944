"""The machines an actor's targets poll: configured ones merged with its listing. Pure.

Rules:
- configured machines override the names of discovered ones and are added when
  the API does not list them;
- the ``machine`` label: configured name, else ``MachineName``, else the id, else
  the number; names that repeat within an actor get `` (id)`` appended (and a
  counter if even that is taken: :func:`unique_labels`) so every machine keeps
  its own series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config import MachineConfig

__all__ = ["Machine", "MachineInfo", "merge_machines", "unique_labels"]


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """One ``MachineInfo`` record, the fields the exporter uses."""

    machine_id: int
    actor_id: int | None = None
    name: str | None = None
    number: str | None = None
    machine_type: int | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    tz_offset_hours: float | None = None


@dataclass(frozen=True, slots=True)
class Machine:
    """A machine the exporter polls: configured, listed by discovery, or both.

    (What the operator wrote is a ``MachineConfig``, what the API lists a
    :class:`MachineInfo`; this is the one the targets carry.)"""

    machine_id: int | None
    number: str | None
    label: str  # the `machine` label, unique within its actor (unique_labels)
    info: MachineInfo | None = None  # None: configured only, never listed

    @property
    def ref(self) -> str:
        """How the machine is named in a target's key: ``id:<n>``, else ``number:<s>``."""
        return f"id:{self.machine_id}" if self.machine_id is not None else f"number:{self.number}"


def _matches(configured: MachineConfig, info: MachineInfo) -> bool:
    if configured.id is not None:
        return configured.id == info.machine_id
    return configured.number is not None and configured.number == info.number


def unique_labels(
    bases: Sequence[str], ids: Sequence[int | None], numbers: Sequence[str | None]
) -> list[str]:
    """One ``machine`` label per machine, unique within its actor, never empty. Pure.

    A base (the machine's name, else its id or number) that no other machine shares
    is its label, and so is a base that is the machine's own id (ids are unique).
    The others get `` (<id, else number>)`` appended, and a further `` (2)``,
    `` (3)``... while that is taken too (a machine may be *named* ``dup (7013)``),
    so no two machines of an actor can ever publish the same series, whatever names
    the API sends."""
    counts = Counter(bases)
    claims = [
        bool(base) and (counts[base] == 1 or base == str(machine_id))
        for base, machine_id in zip(bases, ids, strict=True)
    ]
    taken = {base for base, claim in zip(bases, claims, strict=True) if claim}
    labels: list[str] = []
    for base, claim, machine_id, number in zip(bases, claims, ids, numbers, strict=True):
        if claim:
            labels.append(base)
            continue
        suffix = str(machine_id) if machine_id is not None else number or ""
        stem = f"{base} ({suffix})" if base else f"({suffix})"
        label, extra = stem, 2
        while label in taken:
            label, extra = f"{stem} ({extra})", extra + 1
        taken.add(label)
        labels.append(label)
    return labels


def merge_machines(
    configured: Sequence[MachineConfig], discovered: Sequence[MachineInfo] | None
) -> tuple[Machine, ...]:
    """Discovered machines (API order) with configured names, then the configured
    machines the API did not list. Pure."""
    used: set[int] = set()
    merged: list[tuple[int | None, str | None, str | None, MachineInfo | None]] = []
    for info in discovered or ():
        match = next((i for i, c in enumerate(configured) if _matches(c, info)), None)
        name = configured[match].name if match is not None else None
        if match is not None:
            used.add(match)
        merged.append((info.machine_id, info.number, name or info.name, info))
    for index, machine in enumerate(configured):
        if index not in used:
            merged.append((machine.id, machine.number, machine.name, None))

    bases = [
        name or (str(mid) if mid is not None else number or "") for mid, number, name, _ in merged
    ]
    ids = [machine_id for machine_id, _, _, _ in merged]
    labels = unique_labels(bases, ids, [number for _, number, _, _ in merged])
    result = [
        Machine(entry[0], entry[1], label, entry[3])
        for entry, label in zip(merged, labels, strict=True)
    ]
    return tuple(result)
