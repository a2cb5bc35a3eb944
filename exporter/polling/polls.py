"""One poll of one target, and what a committed outcome counts and logs.

A poll runs in a worker: its kind asks the API (:meth:`RequestKind.fetch`) and
reads the answer (:meth:`RequestKind.parse`); every failure on the way is a
:class:`~exporter.lynx.errors.LynxError` with a ``reason``, so a poll ends as
exactly one :class:`PollOutcome` (or :class:`Deferred` while a 429 holds its
token, or None when the exporter stops). Once committed, each outcome is
counted here and only here: its failure, its problems and notices, the records
and values the upstream boundary dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from exporter.kinds.base import RequestKind
from exporter.lynx.errors import LynxError, Stopped, TokenHeld
from exporter.lynx.upstream import Dropped
from exporter.polling.plan import Plan
from exporter.polling.store import PollOutcome, Transition
from exporter.targets import EV_DASHBOARD, Target, TargetKey

__all__ = [
    "Deferred",
    "PollCounters",
    "PollResult",
    "count_outcome",
    "log_change",
    "log_notices",
    "poll_safely",
    "poll_target",
]


class PollCounters(Protocol):
    """What polling counts (the exporter's own counters: exporter/metrics/stats.py)."""

    def count_poll_error(self, actor_id: int, reason: str) -> None: ...

    def count_dropped(self, kind: str, dropped: Iterable[Dropped]) -> None: ...

    def count_deferral(self, reason: str) -> None: ...

    def record_round(self, kind: str, seconds: float) -> None: ...

    def forget_rounds(self, keep: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class Deferred:
    """A poll that did not go out: its token is held until ``until`` (monotonic)."""

    key: TargetKey
    until: float
    reason: str = "rate_limited"


PollResult = PollOutcome | Deferred | None  # None: shutting down


def poll_safely(
    plan: Plan,
    kinds: Mapping[str, RequestKind],
    target: Target,
    wall: Callable[[], float],
    log: FilteringBoundLogger,
) -> PollResult:
    """:func:`poll_target`, where a bug costs one poll (``internal``), never a worker."""
    try:
        return poll_target(plan, kinds[target.kind], target, wall)
    except Exception as exc:
        log.error("poll failed unexpectedly", target=str(target.key), error=repr(exc))
        return PollOutcome(
            key=target.key,
            finished_at=wall(),
            reading=None,
            error_reason="internal",
            error=type(exc).__name__,
        )


def poll_target(
    plan: Plan, kind: RequestKind, target: Target, wall: Callable[[], float]
) -> PollResult:
    """One poll of one target: deferred while its token is held, None when stopping."""
    answer = None
    try:
        now = wall()
        answer = kind.fetch(plan.client.get_json, target, datetime.fromtimestamp(now, UTC))
        reading = kind.parse(answer.payload, target, plan.config, now)
    except TokenHeld as held:
        # Nothing was sent: the poll waits for the hold like any other and goes out
        # again, instead of failing on behalf of another poll's 429.
        return Deferred(target.key, held.until)
    except Stopped:
        return None
    except LynxError as error:
        if answer is not None:  # the answer arrived, but could not be read
            error.status, error.attempts = answer.status, answer.attempts
        return PollOutcome(
            key=target.key,
            finished_at=wall(),
            reading=None,
            error_reason=error.reason,
            error=str(error),
            status=error.status,
            attempts=error.attempts,
            duration=0.0 if answer is None else answer.duration,
        )
    return PollOutcome(
        key=target.key,
        finished_at=wall(),
        reading=reading,
        status=answer.status,
        attempts=answer.attempts,
        duration=answer.duration,
    )


def count_outcome(counters: PollCounters, transition: Transition) -> None:
    """Count one committed poll: its failure once, each reason of its answer's
    problems and notices once, each record skipped or value dropped."""
    outcome, target = transition.outcome, transition.new.target
    if outcome.error_reason is not None:
        counters.count_poll_error(target.actor_id, outcome.error_reason)
    reading = outcome.reading
    if reading is not None:
        for reason in sorted({p.reason for p in (*reading.problems, *reading.notices)}):
            counters.count_poll_error(target.actor_id, reason)
        if reading.dropped:
            counters.count_dropped(target.kind, reading.dropped)


def _fields(transition: Transition) -> dict[str, object]:
    outcome, target = transition.outcome, transition.new.target
    fields: dict[str, object] = {
        "actor_id": target.actor_id,
        "actor": target.actor,
        "machine": target.machine_label,
        "window": target.window.name,
        "status": outcome.status,
        "duration": round(outcome.duration, 3),
        "attempt": outcome.attempts,
    }
    if target.kind != EV_DASHBOARD:
        fields["kind"] = target.kind
    return fields


def log_change(log: FilteringBoundLogger, transition: Transition) -> None:
    """One line per change of a target's state: down (warn), recovered (info)."""
    old, new = transition.old, transition.new
    if not new.up:
        reason, error = new.last_error_reason, new.last_error
        log.warning("target down", reason=reason, error=error, **_fields(transition))
    elif old.polled:
        log.info("target up", **_fields(transition))
    else:
        log.debug("target up", **_fields(transition))


def log_notices(log: FilteringBoundLogger, transition: Transition) -> None:
    """A notice (e.g. clock skew) is logged when it appears, not at every poll."""
    reading, old = transition.outcome.reading, transition.old.reading
    seen = {p.reason for p in old.notices} if old is not None else set()
    target = transition.new.target
    for notice in reading.notices if reading is not None else ():
        if notice.reason not in seen:
            log.warning(
                notice.detail,
                actor_id=target.actor_id,
                actor=target.actor,
                machine=target.machine_label,
                fields=notice.field,
            )
