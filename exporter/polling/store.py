"""The snapshot store: poll outcomes in, immutable snapshots out.

Writers (the poller) hand in batches of outcomes; each batch produces one new
:class:`Snapshot` that replaces the old one whole, and the swap returns the
:class:`Transition` of every outcome (old state → new state), which is all that
logging and counting need: an outcome flows poller → store once. Readers
(collector, renderer, landing page) take ``current()`` and never see a
half-applied batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from exporter.kinds.base import Result
from exporter.kinds.discovery import Discovery
from exporter.targets import MachineInfo, Target, TargetKey


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of one target produced."""

    key: TargetKey
    finished_at: float  # wall-clock seconds
    reading: Result | None  # None when the poll failed outright
    error_reason: str | None = None  # poll-error reason when it failed
    error: str | None = None  # secret-free message
    status: int | None = None
    attempts: int = 1
    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class TargetState:
    target: Target
    reading: Result | None = None  # the last reading that arrived (kept until stale)
    last_success: float | None = None  # wall-clock time of that reading
    up: bool = False
    polled: bool = False  # at least one poll has finished
    last_error: str | None = None
    last_error_reason: str | None = None
    last_poll: float | None = None

    def stale_limit(self, stale_after: float) -> float:
        """``stale_after``, or the target's own (kinds polled less often than
        ``poll.interval``, such as machine status, go stale later)."""
        own = self.target.stale_after
        return stale_after if own is None else own

    def fresh(self, now: float, stale_after: float) -> bool:
        """Whether the kept reading may still be published at ``now``."""
        return (
            self.reading is not None
            and self.last_success is not None
            and now - self.last_success < self.stale_limit(stale_after)
        )


@dataclass(frozen=True)
class Snapshot:
    states: MappingProxyType[TargetKey, TargetState]  # read-only view of a dict
    stale_after: float
    generation: int = 0

    @property
    def ready(self) -> bool:
        """Every target has been polled at least once."""
        return all(state.polled for state in self.states.values())

    def next_expiry(self, now: float) -> float | None:
        """The earliest future instant at which a kept reading goes stale."""
        deadlines = [
            s.last_success + s.stale_limit(self.stale_after)
            for s in self.states.values()
            if s.reading is not None and s.last_success is not None
        ]
        future = [d for d in deadlines if d > now]
        return min(future) if future else None


@dataclass(frozen=True, slots=True)
class Transition:
    """One outcome's effect on its target: what logging and counting look at."""

    outcome: PollOutcome
    old: TargetState
    new: TargetState

    @property
    def changed(self) -> bool:
        """Whether the target's visible state (polled, up, reason) changed."""
        old, new = self.old, self.new
        return (old.polled, old.up, old.last_error_reason) != (
            new.polled,
            new.up,
            new.last_error_reason,
        )


@dataclass(frozen=True)
class Swap:
    snapshot: Snapshot
    transitions: tuple[Transition, ...]


def apply_outcome(state: TargetState, outcome: PollOutcome) -> TargetState:
    """Pure: a target's state after one poll outcome."""
    if outcome.reading is None:
        # Failure: keep the last reading (until stale), mark down.
        return replace(
            state,
            up=False,
            polled=True,
            last_error=outcome.error,
            last_error_reason=outcome.error_reason,
            last_poll=outcome.finished_at,
        )
    problems = outcome.reading.problems
    # A reading with unusable fields is published without them, but the target
    # is not "up": its answer was not fully trustworthy.
    return replace(
        state,
        reading=outcome.reading,
        last_success=outcome.finished_at,
        up=not problems,
        polled=True,
        last_error="; ".join(f"{p.field}: {p.detail}" for p in problems) or None,
        last_error_reason=problems[0].reason if problems else None,
        last_poll=outcome.finished_at,
    )


class SnapshotStore:
    def __init__(self, targets: Iterable[Target] = (), stale_after: float = 180.0) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._snapshot = Snapshot(
            states=MappingProxyType({t.key: TargetState(target=t) for t in targets}),
            stale_after=stale_after,
        )

    def current(self) -> Snapshot:
        return self._snapshot  # a single reference read: always a whole snapshot

    def _swap(self, states: dict[TargetKey, TargetState], stale_after: float) -> Snapshot:
        snapshot = Snapshot(
            states=MappingProxyType(states),
            stale_after=stale_after,
            generation=self._snapshot.generation + 1,
        )
        self._snapshot = snapshot
        self._changed.notify_all()
        return snapshot

    def set_targets(self, targets: Iterable[Target], stale_after: float) -> Snapshot:
        """Reload: surviving targets keep their state (with their new definition),
        new ones start unpolled, removed ones are gone from the next snapshot."""
        with self._lock:
            old = self._snapshot.states
            states: dict[TargetKey, TargetState] = {}
            for target in targets:
                previous = old.get(target.key)
                if previous is None:
                    states[target.key] = TargetState(target=target)
                elif previous.target == target:
                    # The same state object: the renderer keeps its cached lines, so
                    # a reload that leaves targets alone re-renders nothing.
                    states[target.key] = previous
                else:
                    states[target.key] = replace(previous, target=target)
            return self._swap(states, stale_after)

    def swap(self, outcomes: Iterable[PollOutcome]) -> Swap:
        """Apply a batch in order, as one new snapshot; returns it with each
        outcome's transition. Outcomes for targets no longer configured (removed
        by a reload meanwhile) are dropped and have no transition."""
        with self._lock:
            current = self._snapshot
            states = current.states.copy()  # dict.copy: no re-hashing of every key
            transitions: list[Transition] = []
            for outcome in outcomes:
                state = states.get(outcome.key)
                if state is not None:
                    new = apply_outcome(state, outcome)
                    states[outcome.key] = new
                    transitions.append(Transition(outcome, state, new))
            if not transitions:
                return Swap(current, ())
            return Swap(self._swap(states, current.stale_after), tuple(transitions))

    def apply(self, outcomes: Iterable[PollOutcome]) -> Snapshot:
        """:meth:`swap`, when only the new snapshot matters."""
        return self.swap(outcomes).snapshot

    def wait_for_change(self, generation: int, timeout: float) -> Snapshot:
        """Block until the generation differs from ``generation`` or timeout."""
        with self._changed:
            self._changed.wait_for(lambda: self._snapshot.generation != generation, timeout)
            return self._snapshot


def discovered_machines(snapshot: Snapshot) -> Mapping[int, tuple[MachineInfo, ...]]:
    """Each discovering actor's last complete listing (a failed poll keeps it). Pure."""
    return {
        state.target.actor_id: state.reading.machines
        for state in snapshot.states.values()
        if isinstance(state.reading, Discovery)
    }
