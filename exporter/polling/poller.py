"""The poller: fires targets on the schedule, runs their request kind, commits outcomes.

Standard parts, and one direction (poller → store, once):

- a stdlib :mod:`sched` scheduler holds each idle target's next grid point (see
  ``schedule.py``: evenly spread, non-drifting); a busy target's next point is
  planned when its poll ends, so grid points it would skip are never scheduled.
  One thread, ``poll-scheduler``, runs it and owns every piece of scheduling
  state, so none of it needs a lock. It sleeps at least a ``TICK`` between
  runs: thousands of targets wake it per tick, not per grid point;
- a :class:`concurrent.futures.ThreadPoolExecutor` with ``lynx.max_concurrency``
  workers runs the polls: ``kind.request`` → ``client.get_json`` → ``kind.parse``
  (request kinds: ``exporter/kinds.py``, the extension point for new endpoints).
  At most ``QUEUED_PER_WORKER`` polls per worker are handed to it; targets due
  beyond that wait in a FIFO of keys (a pending future costs ~2 KB, a key 8 bytes),
  so an over-budget fleet is polled fairly, each target once per effective round;
- a finished poll hands its outcome back to the scheduler thread (waking it only
  if it would otherwise sleep past ``COMMIT_DELAY``, or if polls wait for a
  worker and the workers run low),
  which commits outcomes in batches (at most one snapshot swap per
  ``BATCH_WINDOW``) through ``store.swap``; the transitions it returns are what
  is counted and logged.

Guarantees: a target whose previous poll has not finished skips its grid point
(never queued twice); a slow target holds one worker, never the schedule; a reload
keeps the grid and the state of surviving targets (a poll still waiting for a
worker keeps its place unless the reload changed its target's interval). A poll
whose token is held after a 429 is *deferred*, not failed: it leaves its worker at
once and is sent again when the hold ends, and its target keeps its state meanwhile.

Executor threads are not daemons; the command line ends the process with
``os._exit`` after shutting down, so a request hanging upstream cannot hold it.
"""

from __future__ import annotations

import collections
import gc
import sched
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from structlog.typing import FilteringBoundLogger

from exporter.config import Config, RefreshToken
from exporter.kinds import all_kinds
from exporter.kinds.base import BadPayload, RequestKind
from exporter.kinds.discovery import fetch_pages
from exporter.lynx.client import LynxClient, LynxError, RateLimitedError, Stopped
from exporter.lynx.ratelimit import TokenGate
from exporter.metrics.stats import Stats
from exporter.polling.schedule import first_due, next_due, phases
from exporter.polling.store import PollOutcome, SnapshotStore, Transition
from exporter.targets import EV_DASHBOARD, Target, TargetKey

BATCH_WINDOW = 0.25  # seconds: at most one snapshot swap per window under load
QUEUED_PER_WORKER = 2  # polls handed to the executor per worker: none idles between two
TICK = 0.005  # seconds: how late a poll may go out after its grid point
COMMIT_DELAY = 0.25  # seconds a finished poll may wait for the scheduler's next wake-up
IDLE_WAKE = 1.0  # seconds: the scheduler looks at its state at least this often
CommitHook = Callable[[Sequence[Transition]], None]
_NO_KWARGS: dict[str, object] = {}  # shared by every scheduler event; never written


@dataclass(frozen=True)
class Plan:
    """Everything polling needs, swapped whole on reload."""

    config: Config
    targets: Mapping[TargetKey, Target]
    client: LynxClient
    gate: TokenGate  # the client's per-token 429 holds

    @cached_property
    def refresh_tokens(self) -> Mapping[int, RefreshToken]:
        """The actors polled on a refresh token, with it. Once per plan: every
        scrape asks (for the token expiry gauge), and walking 10,000 targets per
        scrape cost 0.4 ms of GIL time each."""
        return {
            t.actor_id: t.token for t in self.targets.values() if isinstance(t.token, RefreshToken)
        }


@dataclass(frozen=True)
class Deferred:
    """A poll that did not go out: its token is held until ``until`` (monotonic)."""

    key: TargetKey
    until: float
    reason: str = "rate_limited"


PollResult = PollOutcome | Deferred | None  # None: shutting down


class Poller:
    def __init__(
        self,
        store: SnapshotStore,
        stats: Stats,
        logger: FilteringBoundLogger,
        *,
        stop: threading.Event,
        kinds: Mapping[str, RequestKind] | None = None,
        spread: bool = True,
        wall_clock: Callable[[], float] = time.time,
        on_commit: CommitHook | None = None,
    ) -> None:
        self._store = store
        self._stats = stats
        self._log = logger
        self._stop = stop
        self._kinds = all_kinds() if kinds is None else kinds
        self._spread = spread
        self._wall = wall_clock
        self._on_commit = on_commit
        self._wake = threading.Event()
        self._posted: Plan | None = None  # handed over to the scheduler thread
        self._plan: Plan | None = None  # scheduler thread only, from here down
        self._sched = sched.scheduler(time.monotonic)
        # One bound method (and kwargs dict) for every event: 20,000 fewer objects at 10k.
        self._fire_action, self._resubmit_action = self._fire, self._resubmit
        self._executor: ThreadPoolExecutor | None = None
        self._workers = 0
        self._epoch: float | None = None
        # Busy targets (waiting, submitted, running or parked) -> the grid point they were
        # due at. They have no event (none to skip): a poll's end plans its next point.
        self._busy: dict[TargetKey, float] = {}
        self._waiting: collections.deque[TargetKey] = collections.deque()  # due, not submitted
        self._submitted = 0  # handed to the executor and not yet drained
        self._parked: dict[TargetKey, float] = {}  # deferred polls -> hold end (monotonic)
        # Deferred polls -> when first deferred: counted once, and released oldest first
        # at a hold's end (sched breaks a tie by priority): a loser goes first next time.
        self._deferred_since: dict[TargetKey, float] = {}
        self._finished: collections.deque[PollResult] = collections.deque()
        self._batch: list[PollOutcome] = []
        self._last_commit = 0.0
        self._sleep_until = 0.0  # when the scheduler wakes up on its own next
        self._rounds: dict[str, _Round] = {}  # per request kind
        self._intervals: Mapping[str, float] = {}
        self._thread: threading.Thread | None = None

    # --- control (any thread) -------------------------------------------------------

    def configure(self, plan: Plan) -> None:
        """Apply a (new) plan: the store keeps surviving targets' state and drops
        removed ones at once; the scheduler picks the plan up on the same grid."""
        self._store.set_targets(plan.targets.values(), plan.config.poll.stale_after)
        self._intervals = kind_intervals(plan)
        self._posted = plan
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="poll-scheduler", daemon=True)
        self._thread.start()

    @property
    def intervals(self) -> Mapping[str, float]:
        """Each request kind's poll interval under the latest plan."""
        return self._intervals

    @property
    def alive(self) -> bool:
        """False once the scheduler thread has died (a bug): health says so."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop scheduling; polls blocked upstream are abandoned, not waited for."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        plan = self._plan or self._posted
        if plan is not None:
            plan.client.close()

    def wait_until_ready(self, timeout: float) -> bool:
        """Block until every target was polled once (used by --once)."""
        deadline = time.monotonic() + timeout
        snapshot = self._store.current()
        while not snapshot.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set() or not self.alive:
                return False
            snapshot = self._store.wait_for_change(snapshot.generation, min(remaining, 0.5))
        return True

    # --- the scheduler thread -------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug: say so; health turns bad (see alive)
            self._log.error("poll scheduler failed", error=repr(exc))
            raise

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before looking: a later wake is kept for the next wait
            self._drain()
            posted = self._posted
            if posted is not None and posted is not self._plan:
                self._adopt(posted)
            delay = self._sched.run(blocking=False)
            self._fill()
            age = time.monotonic() - self._last_commit if self._batch else None
            if age is not None and age >= BATCH_WINDOW:
                batch, self._batch, self._last_commit = self._batch, [], time.monotonic()
                self.commit(batch)
                age = None
            wait = sleep_for(delay, age)
            self._sleep_until = time.monotonic() + wait
            # A poll handed back since the drain may not have woken us (see _on_done).
            self._wake.wait(min(wait, COMMIT_DELAY) if self._finished else wait)

    def _adopt(self, plan: Plan) -> None:
        """Make ``plan`` the running one: a new schedule on the same grid."""
        old, self._plan = self._plan, plan
        now = time.monotonic()
        if self._epoch is None:
            self._epoch = now  # the first round starts at once
        self._resize(plan.config.lynx.max_concurrency)
        if old is not None and self._waiting:
            # Waiting polls keep their place unless their interval changed: those start
            # on the new grid (an over-budget backlog would otherwise go out in a burst).
            self._waiting, dropped = still_waiting(self._waiting, plan, old)
            for key in dropped:
                del self._busy[key]
        self._sched = sched.scheduler(time.monotonic)
        for key, due in first_dues(plan, old, self._epoch, now, spread=self._spread):
            if key in self._busy:  # when its poll ends: ``due`` or, if past, a later point
                self._busy[key] = due - _interval(plan, plan.targets[key])
            else:
                self._sched.enterabs(due, 0, self._fire_action, (key, due), _NO_KWARGS)
        same_holds = old is not None and old.gate is plan.gate
        for key, until in list(self._parked.items()):
            if key in plan.targets:
                # A new gate (lynx or a token changed) has dropped the holds.
                self._park(key, until if same_holds else now)
            else:
                del self._parked[key]
                self._busy.pop(key, None)
                self._deferred_since.pop(key, None)
        self._rounds = kept_rounds(self._rounds, plan, now)
        self._stats.forget_rounds(self._rounds)
        if old is not None and old.client is not plan.client:
            old.client.close()  # in-flight requests on it finish or fail on their own
        if old is not None:  # not at start-up: the first grid points are due at once
            # A reload's long-lived garbage (parsed config, old schedule) would set
            # off a full collection (~100 ms at 10,000 targets) seconds later.
            gc.collect()

    def _resize(self, workers: int) -> None:
        if workers == self._workers and self._executor is not None:
            return
        previous = self._executor
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="poll-worker")
        self._workers = workers
        if previous is not None:
            previous.shutdown(wait=False)  # its queued polls still run, then it ends

    def _fire(self, key: TargetKey, due: float) -> None:
        """A grid point: the target's poll waits for a worker."""
        self._busy[key] = due
        self._waiting.append(key)

    def _plan_next(self, key: TargetKey, due: float) -> None:
        """A poll ended: its target's next grid point, past any it was busy through."""
        plan = self._plan
        assert plan is not None
        target = plan.targets.get(key)
        if target is not None:  # not removed by a reload meanwhile
            following = next_due(due, _interval(plan, target), time.monotonic())
            self._sched.enterabs(following, 0, self._fire_action, (key, following), _NO_KWARGS)

    def _park(self, key: TargetKey, until: float) -> None:
        """Release a deferred poll at ``until``, the longest-deferred first at a tie."""
        self._parked[key] = until
        since = self._deferred_since.get(key, until)
        self._sched.enterabs(until, since, self._resubmit_action, (key,), _NO_KWARGS)

    def _resubmit(self, key: TargetKey) -> None:
        """A deferral's hold ended: the poll goes out now."""
        plan, until = self._plan, self._parked.get(key)
        if plan is None or until is None or until > time.monotonic():
            return  # not parked any more, or parked again for longer (a later event)
        del self._parked[key]
        self._waiting.append(key)

    def _fill(self) -> None:
        """Hand waiting targets to the executor, in order, up to its share."""
        plan, executor = self._plan, self._executor
        if plan is None or executor is None:
            return
        while self._waiting and self._submitted < QUEUED_PER_WORKER * self._workers:
            key = self._waiting.popleft()
            target = plan.targets.get(key)
            if target is None:  # removed by a reload meanwhile
                self._busy.pop(key, None)
                continue
            self._submitted += 1
            future = executor.submit(poll_safely, plan, self._kinds, target, self._wall, self._log)
            future.add_done_callback(self._on_done)

    def _on_done(self, future: Future[PollResult]) -> None:
        # In the worker thread (or here, for a cancelled future): hand back only.
        self._finished.append(None if future.cancelled() else future.result())
        # Wake the scheduler only if it would sleep past COMMIT_DELAY, or if polls wait
        # and the workers run low. (Reads of its state: a stale one costs a wake-up.)
        sleeps_long = self._sleep_until - time.monotonic() > COMMIT_DELAY
        runs_low = self._submitted - len(self._finished) < self._workers
        if sleeps_long or (runs_low and self._waiting):
            self._wake.set()

    def _drain(self) -> None:
        """Take finished polls: free their targets, defer or batch their outcomes."""
        while self._finished:
            result = self._finished.popleft()
            self._submitted -= 1
            if result is None:
                continue  # shutting down
            if isinstance(result, Deferred):
                if result.key not in self._deferred_since:
                    self._deferred_since[result.key] = time.monotonic()
                    self._stats.count_deferral(result.reason)  # once per poll
                self._park(result.key, result.until)
                continue
            due = self._busy.pop(result.key, None)
            if due is not None:
                self._plan_next(result.key, due)
            self._deferred_since.pop(result.key, None)
            self._batch.append(result)
            note_round(self._rounds, self._stats, result.key)

    def commit(self, batch: Sequence[PollOutcome]) -> None:
        """One snapshot swap for ``batch``; count and log what it changed."""
        transitions = self._store.swap(batch).transitions
        for transition in transitions:
            count_errors(self._stats, transition)
            if transition.changed:
                log_change(self._log, transition)
        if self._on_commit is not None and transitions:
            self._on_commit(transitions)


def note_round(rounds: Mapping[str, _Round], stats: Stats, key: TargetKey) -> None:
    """A target's poll finished: record its kind's round if that completed it."""
    kind_round = rounds.get(key.kind)
    seconds = None if kind_round is None else kind_round.polled(key, time.monotonic())
    if seconds is not None:
        stats.record_round(key.kind, seconds)


def count_errors(stats: Stats, transition: Transition) -> None:
    """Count a failed poll once, each reason of an answer's unusable fields, and
    each record skipped or value dropped at the upstream boundary."""
    outcome, target = transition.outcome, transition.new.target
    if outcome.error_reason is not None:
        stats.count_poll_error(target.actor_id, outcome.error_reason)
    if outcome.reading is not None:
        for reason in sorted({p.reason for p in outcome.reading.problems}):
            stats.count_poll_error(target.actor_id, reason)
        if outcome.reading.dropped:
            stats.count_dropped(target.kind, outcome.reading.dropped)


def log_change(log: FilteringBoundLogger, transition: Transition) -> None:
    """One line per change of a target's state: down (warn), recovered (info)."""
    old, new, outcome = transition.old, transition.new, transition.outcome
    target = new.target
    fields = {
        "actor_id": target.actor_id,
        "actor": target.actor,
        "machine": target.machine,
        "window": target.window.name,
        "status": outcome.status,
        "duration": round(outcome.duration, 3),
        "attempt": outcome.attempts,
    }
    if target.kind != EV_DASHBOARD:
        fields["kind"] = target.kind
    if not new.up:
        log.warning("target down", reason=new.last_error_reason, error=new.last_error, **fields)
    elif old.polled:
        log.info("target up", **fields)
    else:
        log.debug("target up", **fields)


def first_dues(
    plan: Plan, old: Plan | None, epoch: float, now: float, *, spread: bool
) -> list[tuple[TargetKey, float]]:
    """Each target's first grid point under ``plan``. Pure.

    Status and discovery targets have their own (longer) intervals: their phases
    are spread over one poll.interval, so a first round of every kind is done
    within it, and they repeat at their own interval. Without spreading (--once),
    targets a re-plan adds (discovery) go at once.
    """
    by_interval: dict[float, list[TargetKey]] = {}
    for key, target in plan.targets.items():
        by_interval.setdefault(_interval(plan, target), []).append(key)
    dues = []
    for interval, keys in by_interval.items():
        offsets = phases(keys, min(interval, plan.config.poll.interval) if spread else 0.0)
        for key in keys:
            due = first_due(epoch, offsets[key], interval, now)
            if not spread and (old is None or key not in old.targets):
                due = now
            dues.append((key, due))
    return dues


def sleep_for(delay: float | None, batch_age: float | None) -> float:
    """Pure: how long the scheduler sleeps. Until its next event, but at least a
    TICK (a grid of thousands of targets wakes it per tick, not per target) and
    at most IDLE_WAKE; no longer than until a pending batch is due."""
    wait = IDLE_WAKE if delay is None else min(max(delay, TICK), IDLE_WAKE)
    return wait if batch_age is None else min(wait, BATCH_WINDOW - batch_age)


def still_waiting(
    waiting: Iterable[TargetKey], plan: Plan, old: Plan
) -> tuple[collections.deque[TargetKey], list[TargetKey]]:
    """Pure: the waiting polls that keep their place under ``plan`` (in order),
    and those dropped: removed targets and those whose interval changed."""
    kept: collections.deque[TargetKey] = collections.deque()
    dropped: list[TargetKey] = []
    for key in waiting:
        target, before = plan.targets.get(key), old.targets.get(key)
        if target is None or before is None or _interval(plan, target) != _interval(old, before):
            dropped.append(key)
        else:
            kept.append(key)
    return kept, dropped


def kept_rounds(rounds: Mapping[str, _Round], plan: Plan, now: float) -> dict[str, _Round]:
    """Rounds are measured per request kind, each against its own interval: one
    per kind ``plan`` polls, carried over from ``rounds`` when it had one."""
    by_kind: dict[str, list[TargetKey]] = {}
    for key in plan.targets:
        by_kind.setdefault(key.kind, []).append(key)
    kept = {kind: rounds.get(kind) or _Round() for kind in by_kind}
    for kind, keys in by_kind.items():
        kept[kind].keep(keys, now)
    return kept


def kind_intervals(plan: Plan) -> dict[str, float]:
    """Pure: each request kind's interval (poll.interval unless its targets have their own)."""
    intervals: dict[str, float] = {}
    for target in plan.targets.values():
        intervals.setdefault(target.kind, _interval(plan, target))
    return intervals


def _interval(plan: Plan, target: Target) -> float:
    return plan.config.poll.interval if target.interval is None else target.interval


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
    plan: Plan, kind: RequestKind, target: Target, wall: Callable[[], float] = time.time
) -> PollResult:
    """One poll of one target: deferred while its token is held, None when stopping."""
    until = plan.gate.held_until(target.token.reveal())
    if until is not None:
        return Deferred(target.key, until)
    request = kind.request(target, datetime.now(UTC))
    try:
        if request.paged:
            answer = fetch_pages(plan.client.get_json, request.path, request.params, target.token)
        else:
            answer = plan.client.get_json(request.path, request.params, target.token)
    except Stopped:
        return None
    except RateLimitedError as error:
        if error.status is None:
            # Another poll's 429 held the token after we looked (or before a
            # retry): this attempt was not sent, so the poll waits for the hold
            # like any other and goes out again, instead of failing on its behalf.
            held = plan.gate.held_until(target.token.reveal())
            return Deferred(target.key, held if held is not None else time.monotonic())
        return _failed(target, error, wall)
    except LynxError as error:
        return _failed(target, error, wall)
    try:
        reading = kind.parse(answer.payload, target, plan.config)
    except BadPayload as error:
        return PollOutcome(
            key=target.key,
            finished_at=wall(),
            reading=None,
            error_reason="bad_payload",
            error=str(error),
            status=answer.status,
            attempts=answer.attempts,
            duration=answer.duration,
        )
    return PollOutcome(
        key=target.key,
        finished_at=wall(),
        reading=reading,
        status=answer.status,
        attempts=answer.attempts,
        duration=answer.duration,
    )


def _failed(target: Target, error: LynxError, wall: Callable[[], float]) -> PollOutcome:
    return PollOutcome(
        key=target.key,
        finished_at=wall(),
        reading=None,
        error_reason=error.reason,
        error=str(error),
        status=error.status,
        attempts=error.attempts,
    )


class _Round:
    """Measures a full round: from its start until every target finished a poll.

    A new round starts when the last one ends; targets a reload adds join the
    next round, and targets it removes are no longer waited for."""

    def __init__(self) -> None:
        self._pending: set[TargetKey] = set()
        self._all: frozenset[TargetKey] = frozenset()
        self._started: float | None = None

    def keep(self, keys: Iterable[TargetKey], now: float) -> None:
        self._all = frozenset(keys)
        if self._started is None:
            self._pending, self._started = set(self._all), now
        else:
            self._pending &= self._all

    def polled(self, key: TargetKey, now: float) -> float | None:
        """Note a finished poll; the round's length when it completed the round."""
        if self._started is None:
            return None
        self._pending.discard(key)
        if self._pending:
            return None
        seconds = now - self._started
        self._pending, self._started = set(self._all), now
        return seconds
