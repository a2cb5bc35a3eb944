"""What the landing page leads with: per-actor summary, silent machines, failing
targets. Pure: computed from one snapshot's states at ``now``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from exporter.kinds.machine_status import MachineStatus
from exporter.polling.store import TargetState
from exporter.targets import MACHINE_STATUS

__all__ = ["SILENT_AFTER", "ActorSummary", "FleetSummary", "SilentMachine", "summarize"]

# The same threshold as the NayaxEVMachineSilent alert's default.
SILENT_AFTER: Final = 3600.0


@dataclass(frozen=True)
class ActorSummary:
    actor_id: int
    actor: str
    machines: int
    silent: int
    targets: int
    targets_down: int


@dataclass(frozen=True)
class SilentMachine:
    actor_id: int
    actor: str
    machine: str
    machine_id: int | None
    city: str
    last_keepalive: float
    mqtt_connected: bool | None


@dataclass(frozen=True)
class FleetSummary:
    actors: tuple[ActorSummary, ...]
    silent: tuple[SilentMachine, ...]  # longest silence first
    failing: tuple[TargetState, ...]  # polled and down


def _silent(state: TargetState, now: float) -> SilentMachine | None:
    reading, target = state.reading, state.target
    if target.kind != MACHINE_STATUS or not isinstance(reading, MachineStatus):
        return None
    keepalive = reading.last_keepalive
    if keepalive is None or now - keepalive <= SILENT_AFTER:
        return None
    mqtt = None if reading.mqtt_connected is None else reading.mqtt_connected == 1.0
    info = None if target.machine is None else target.machine.info
    city = "" if info is None else info.city or ""
    return SilentMachine(
        target.actor_id,
        target.actor,
        target.machine_label,
        target.machine_id,
        city,
        keepalive,
        mqtt,
    )


def summarize(states: Iterable[TargetState], now: float) -> FleetSummary:
    """Pure."""
    names: dict[int, str] = {}
    machines: dict[int, set[str]] = {}
    counts: dict[int, list[int]] = {}  # actor -> [targets, down]
    silent: list[SilentMachine] = []
    failing: list[TargetState] = []
    for state in states:
        target = state.target
        names.setdefault(target.actor_id, target.actor)
        if target.machine is not None:
            machines.setdefault(target.actor_id, set()).add(target.machine_label)
        count = counts.setdefault(target.actor_id, [0, 0])
        count[0] += 1
        if state.polled and not state.up:
            count[1] += 1
            failing.append(state)
        found = _silent(state, now)
        if found is not None:
            silent.append(found)
    silent_by_actor: dict[int, int] = {}
    for machine in silent:
        silent_by_actor[machine.actor_id] = silent_by_actor.get(machine.actor_id, 0) + 1
    actors = tuple(
        ActorSummary(
            actor_id,
            name,
            len(machines.get(actor_id, ())),
            silent_by_actor.get(actor_id, 0),
            counts[actor_id][0],
            counts[actor_id][1],
        )
        for actor_id, name in names.items()
    )
    silent.sort(key=lambda m: (m.last_keepalive, m.actor, m.machine))
    return FleetSummary(actors, tuple(silent), tuple(failing))
