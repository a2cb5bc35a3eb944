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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from structlog.typing import FilteringBoundLogger

from exporter.kinds import KINDS
from exporter.kinds.base import RequestKind
from exporter.polling.clock import SYSTEM_CLOCK, Clock
from exporter.polling.plan import Plan, replanned
from exporter.polling.polls import (
    Deferred,
    PollCounters,
    PollResult,
    count_outcome,
    log_change,
    log_notices,
    poll_safely,
)
from exporter.polling.schedule import first_due, next_due, phases
from exporter.polling.store import PollOutcome, SnapshotStore, Transition, discovered_machines
from exporter.targets import DISCOVERY, Target, TargetKey

BATCH_WINDOW = 0.25  # seconds: at most one snapshot swap per window under load
QUEUED_PER_WORKER = 2  # polls handed to the executor per worker: none idles between two
TICK = 0.005  # seconds: how late a poll may go out after its grid point
COMMIT_DELAY = 0.25  # seconds a finished poll may wait for the scheduler's next wake-up
IDLE_WAKE = 1.0  # seconds: the scheduler looks at its state at least this often
ReplanHook = Callable[[Plan], None]  # told of every plan the poller made itself
# The workers that run polls, given how many may run at once. Passed in, like the clock,
# so tests can run the poller in virtual time.
ExecutorFactory = Callable[[int], Executor]
_NO_KWARGS: dict[str, object] = {}  # shared by every scheduler event; never written


def thread_pool(workers: int) -> Executor:
    """The executor polls run on: ``workers`` threads named ``poll-worker``."""
    return ThreadPoolExecutor(workers, thread_name_prefix="poll-worker")


class Poller:
    def __init__(
        self,
        store: SnapshotStore,
        stats: PollCounters,
        logger: FilteringBoundLogger,
        *,
        stop: threading.Event,
        kinds: Mapping[str, RequestKind] = KINDS,
        spread: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        executor: ExecutorFactory = thread_pool,
        on_replan: ReplanHook | None = None,
    ) -> None:
        self._store = store
        self._stats = stats
        self._log = logger
        self._stop = stop
        self._kinds = kinds
        self._spread = spread
        self._clock = clock
        self._new_executor = executor
        self._on_replan = on_replan
        self._wake = threading.Event()
        self._posted: Plan | None = None  # handed over to the scheduler thread
        self._plan: Plan | None = None  # scheduler thread only, from here down
        self._sched = sched.scheduler(clock.monotonic)
        # One bound method (and kwargs dict) for every event, not one per event.
        self._fire_action, self._resubmit_action = self._fire, self._resubmit
        self._executor: Executor | None = None
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
        deadline = self._clock.monotonic() + timeout
        snapshot = self._store.current()
        while not snapshot.ready:
            remaining = deadline - self._clock.monotonic()
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
                # A reload's plan was built from the listings of its moment: one
                # committed since then must not wait for the next change.
                self._replan(posted)
            delay = self._sched.run(blocking=False)
            self._fill()
            age = self._clock.monotonic() - self._last_commit if self._batch else None
            if age is not None and age >= BATCH_WINDOW:
                batch, self._batch, self._last_commit = self._batch, [], self._clock.monotonic()
                self.commit(batch)
                age = None
            wait = sleep_for(delay, age)
            self._sleep_until = self._clock.monotonic() + wait
            # A poll handed back since the drain may not have woken us (see _on_done).
            self._clock.wait(self._wake, min(wait, COMMIT_DELAY) if self._finished else wait)

    def _adopt(self, plan: Plan) -> None:
        """Make ``plan`` the running one: a new schedule on the same grid."""
        old, self._plan = self._plan, plan
        now = self._clock.monotonic()
        if self._epoch is None:
            self._epoch = now  # the first round starts at once
        self._resize(plan.config.lynx.max_concurrency)
        if old is not None and self._waiting:
            # Waiting polls keep their place unless their interval changed: those start
            # on the new grid (an over-budget backlog would otherwise go out in a burst).
            self._waiting, dropped = still_waiting(self._waiting, plan, old)
            for key in dropped:
                del self._busy[key]
        self._sched = sched.scheduler(self._clock.monotonic)
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
            # off a long full collection seconds later, in the middle of a scrape.
            gc.collect()

    def _resize(self, workers: int) -> None:
        if workers == self._workers and self._executor is not None:
            return
        previous = self._executor
        self._executor = self._new_executor(workers)
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
            following = next_due(due, _interval(plan, target), self._clock.monotonic())
            self._sched.enterabs(following, 0, self._fire_action, (key, following), _NO_KWARGS)

    def _park(self, key: TargetKey, until: float) -> None:
        """Release a deferred poll at ``until``, the longest-deferred first at a tie."""
        self._parked[key] = until
        since = self._deferred_since.get(key, until)
        self._sched.enterabs(until, since, self._resubmit_action, (key,), _NO_KWARGS)

    def _resubmit(self, key: TargetKey) -> None:
        """A deferral's hold ended: the poll goes out now."""
        plan, until = self._plan, self._parked.get(key)
        if plan is None or until is None or until > self._clock.monotonic():
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
            future = executor.submit(
                poll_safely, plan, self._kinds, target, self._clock.wall, self._log
            )
            future.add_done_callback(self._on_done)

    def _on_done(self, future: Future[PollResult]) -> None:
        # In the worker thread (or here, for a cancelled future): hand back only.
        self._finished.append(None if future.cancelled() else future.result())
        # Wake the scheduler only if it would sleep past COMMIT_DELAY, or if polls wait
        # and the workers run low. (Reads of its state: a stale one costs a wake-up.)
        sleeps_long = self._sleep_until - self._clock.monotonic() > COMMIT_DELAY
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
                    self._deferred_since[result.key] = self._clock.monotonic()
                    self._stats.count_deferral(result.reason)  # once per poll
                self._park(result.key, result.until)
                continue
            due = self._busy.pop(result.key, None)
            if due is not None:
                self._plan_next(result.key, due)
            self._deferred_since.pop(result.key, None)
            self._batch.append(result)
            note_round(self._rounds, self._stats, result.key, self._clock.monotonic())

    def commit(self, batch: Sequence[PollOutcome]) -> None:
        """One snapshot swap for ``batch``; count and log what it changed; a changed
        machine listing re-plans the targets at once, on this thread."""
        swap = self._store.swap(batch)
        for transition in swap.transitions:
            count_outcome(self._stats, transition)
            log_notices(self._log, transition)
            if transition.changed:
                log_change(self._log, transition)
        if self._plan is not None and any(listing_changed(t) for t in swap.transitions):
            self._replan(self._plan)

    def _replan(self, plan: Plan) -> None:
        """Adopt ``plan`` with the targets for the current listings, if they differ."""
        new = replanned(plan, discovered_machines(self._store.current()))
        if new is not None:
            self.configure(new)
            self._adopt(new)
            if self._on_replan is not None:
                self._on_replan(new)


def note_round(
    rounds: Mapping[str, _Round], stats: PollCounters, key: TargetKey, now: float
) -> None:
    """A target's poll finished: record its kind's round if that completed it."""
    kind_round = rounds.get(key.kind)
    seconds = None if kind_round is None else kind_round.polled(key, now)
    if seconds is not None:
        stats.record_round(key.kind, seconds)


def listing_changed(transition: Transition) -> bool:
    """Pure: whether a committed outcome changed a machine listing."""
    return transition.new.target.kind == DISCOVERY and transition.old.reading != (
        transition.new.reading
    )


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
