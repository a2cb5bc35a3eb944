"""What the exporter watches in committed machine-status and discovery outcomes.

- A status answer with a timestamp more than 5 minutes in the future counts
  ``nayax_ev_poll_errors_total{reason="clock_skew"}`` (once per poll) and is
  logged once per machine: the value is still published, but
  ``machine_status.timestamps`` is probably wrong.
- A discovery outcome whose machine list differs from the one before asks for a
  re-plan (the daemon rebuilds the targets from the config and the lists).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence

from structlog.typing import FilteringBoundLogger

from exporter.kinds.discovery import Discovery
from exporter.kinds.machine_status import MachineStatus
from exporter.metrics.stats import Stats
from exporter.polling.store import Snapshot, Transition
from exporter.targets import DISCOVERY, MachineInfo, TargetKey

__all__ = ["MachineWatch", "discovered_machines"]


def discovered_machines(snapshot: Snapshot) -> Mapping[int, tuple[MachineInfo, ...]]:
    """Each discovering actor's last complete listing (failed polls keep it). Pure."""
    return {
        state.target.actor_id: state.reading.machines
        for state in snapshot.states.values()
        if state.target.kind == DISCOVERY and isinstance(state.reading, Discovery)
    }


class MachineWatch:
    def __init__(self, logger: FilteringBoundLogger, stats: Stats) -> None:
        self._log = logger
        self._stats = stats
        self._lock = threading.Lock()
        self._warned: set[TargetKey] = set()

    def forget_others(self, keys: Collection[TargetKey]) -> None:
        """Keep the warned-about set to the machines still polled: a listing that
        churns must not grow it for ever."""
        with self._lock:
            self._warned &= set(keys)

    def committed(self, transitions: Sequence[Transition]) -> bool:
        """Look at one committed batch; True if a machine list changed."""
        changed = False
        for transition in transitions:
            new = transition.new
            if isinstance(transition.outcome.reading, MachineStatus):
                self._skew(transition, transition.outcome.reading)
            elif new.target.kind == DISCOVERY and isinstance(new.reading, Discovery):
                old = transition.old.reading
                before = old.machines if isinstance(old, Discovery) else None
                changed = changed or before != new.reading.machines
        return changed

    def _skew(self, transition: Transition, status: MachineStatus) -> None:
        if not status.skewed:
            return
        target = transition.new.target
        self._stats.count_poll_error(target.actor_id, "clock_skew")
        with self._lock:
            if target.key in self._warned:
                return
            self._warned.add(target.key)
        self._log.warning(
            "machine status timestamps lie in the future; check machine_status.timestamps",
            actor_id=target.actor_id,
            actor=target.actor,
            machine=target.machine,
            fields=",".join(status.skewed),
        )
