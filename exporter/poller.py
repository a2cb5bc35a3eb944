"""The poller: fires targets on the schedule, runs the client, hands outcomes to the store.

Threads, all daemons so a hanging upstream can never hold up process exit:
- one scheduler: pops due targets and queues them when a worker slot is free;
- ``max_concurrency`` workers: fetch + parse one target each;
- one committer: drains finished outcomes in batches into one snapshot swap,
  counts errors and logs each change of a target's state exactly once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from structlog.typing import FilteringBoundLogger

from exporter.client import LynxClient, LynxError, Stopped
from exporter.config import Config
from exporter.reading import BadPayload, parse_payload
from exporter.schedule import first_due, next_due, phases
from exporter.stats import Stats
from exporter.store import PollOutcome, SnapshotStore, TargetState, apply_outcome
from exporter.targets import Target, TargetKey
from exporter.windows import window_params

ClientFactory = Callable[[Config], LynxClient]
BATCH_WINDOW = 0.05  # seconds the committer waits to gather a batch


@dataclass(frozen=True)
class _Plan:
    """Everything a round needs, swapped whole on reload."""

    config: Config
    targets: dict[TargetKey, Target]
    client: LynxClient


class Poller:
    def __init__(
        self,
        store: SnapshotStore,
        stats: Stats,
        logger: FilteringBoundLogger,
        client_factory: ClientFactory,
        *,
        spread: bool = True,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._stats = stats
        self._log = logger
        self._client_factory = client_factory
        self._spread = spread
        self._wall = wall_clock
        self._stop = threading.Event()
        self._wake = threading.Event()  # scheduler: the plan changed
        self._lock = threading.Lock()
        self._plan: _Plan | None = None
        self._heap: list[tuple[float, int, TargetKey]] = []
        self._seq = itertools.count()
        self._epoch = time.monotonic()
        self._in_flight: set[TargetKey] = set()
        self._work: queue.Queue[Target | None] = queue.Queue()
        self._done: queue.Queue[PollOutcome] = queue.Queue()
        self._slots = threading.Semaphore(0)
        self._workers = 0
        self._capacity = 0  # slots in circulation (= max_concurrency)
        self._surplus = 0  # slots to swallow after a reload lowered concurrency
        self._threads: list[threading.Thread] = []

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    # --- configuration -----------------------------------------------------------

    def configure(self, config: Config, targets: Sequence[Target]) -> None:
        """Apply a (new) config: the store keeps surviving targets' state and
        drops removed ones; the schedule is rebuilt on the same grid."""
        old = self._plan
        client = (
            old.client
            if old is not None and old.config.lynx == config.lynx
            else self._client_factory(config)
        )
        plan = _Plan(config, {t.key: t for t in targets}, client)
        self._store.set_targets(targets, config.poll.stale_after)
        interval = config.poll.interval
        now = time.monotonic()
        offsets = phases([t.key for t in targets], interval if self._spread else 0.0)
        with self._lock:
            self._plan = plan
            self._heap = [
                (first_due(self._epoch, offsets[t.key], interval, now), next(self._seq), t.key)
                for t in targets
            ]
            heapq.heapify(self._heap)
            self._resize(config.lynx.max_concurrency)
        self._wake.set()
        if old is not None and old.client is not client:
            old.client.close()  # in-flight requests on it finish or fail on their own

    def _resize(self, wanted: int) -> None:
        """Make ``wanted`` worker slots available (called under the lock).

        Workers only ever grow; lowering concurrency swallows surplus slots as
        running polls hand them back."""
        while self._workers < wanted:
            self._workers += 1
            if self._threads:  # already running: start the extra worker now
                self._start_thread(self._work_loop, f"poll-worker-{self._workers}")
        delta = wanted - self._capacity
        self._capacity = wanted
        if delta < 0:
            self._surplus -= delta
            return
        cancelled = min(self._surplus, delta)
        self._surplus -= cancelled
        for _ in range(delta - cancelled):
            self._slots.release()

    def _release_slot(self) -> None:
        with self._lock:
            if self._surplus:
                self._surplus -= 1
                return
        self._slots.release()

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        for index in range(self._workers):
            self._start_thread(self._work_loop, f"poll-worker-{index + 1}")
        self._start_thread(self._schedule_loop, "poll-scheduler")
        self._start_thread(self._commit_loop, "poll-committer")

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop scheduling; workers blocked upstream are abandoned (daemons)."""
        self._stop.set()
        self._wake.set()
        for _ in range(self._workers):
            self._work.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.name.startswith("poll-worker"):
                continue  # may hang on a socket until its timeout; not waited for
            thread.join(max(0.0, deadline - time.monotonic()))
        plan = self._plan
        if plan is not None:
            plan.client.close()

    # --- scheduler ----------------------------------------------------------------

    def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                head = self._heap[0] if self._heap else None
            delay = 1.0 if head is None else head[0] - time.monotonic()
            if delay > 0:
                self._wake.wait(min(delay, 1.0))
                self._wake.clear()
                continue
            # Wait for a worker slot; time out now and then to notice stop/reload.
            if not self._slots.acquire(timeout=0.5):
                continue
            target = self._pop_due()
            if target is None:
                self._release_slot()
            else:
                self._work.put(target)

    def _pop_due(self) -> Target | None:
        """Take the head of the schedule if it is due, re-queue it one interval
        later, and return it unless its previous poll is still running."""
        with self._lock:
            plan = self._plan
            if not self._heap or plan is None:
                return None
            due, _, key = self._heap[0]
            now = time.monotonic()
            if due > now:
                return None  # a reload replaced the heap meanwhile
            heapq.heappop(self._heap)
            target = plan.targets.get(key)
            if target is None:
                return None
            heapq.heappush(
                self._heap, (next_due(due, plan.config.poll.interval, now), next(self._seq), key)
            )
            if key in self._in_flight:
                return None  # still running from last time: skip this round
            self._in_flight.add(key)
            return target

    # --- workers ------------------------------------------------------------------

    def _work_loop(self) -> None:
        target = self._work.get()
        while target is not None:
            try:
                outcome = self.poll_target(target)
            except Exception as exc:  # a bug must cost one poll, never a worker
                self._log.error("poll failed unexpectedly", target=str(target.key), error=repr(exc))
                outcome = PollOutcome(
                    key=target.key,
                    finished_at=self._wall(),
                    reading=None,
                    error_reason="internal",
                    error=type(exc).__name__,
                )
            if outcome is not None:
                self._done.put(outcome)
            with self._lock:
                self._in_flight.discard(target.key)
            # At capacity the next target is already due: take it directly and
            # keep the slot, sparing the scheduler and queue hand-offs per poll.
            following = None
            if not self._stop.is_set() and not self._surplus:
                following = self._pop_due()
            if following is None:
                self._release_slot()
                following = self._work.get()
            target = following

    def poll_target(self, target: Target) -> PollOutcome | None:
        """One poll of one target. None only when shutting down."""
        plan = self._plan
        assert plan is not None
        config = plan.config
        params = {
            **window_params(target.window, datetime.now(UTC)),
            **target.machine_params(),
        }
        try:
            answer = plan.client.fetch(target.actor_id, params, target.token)
        except Stopped:
            return None
        except LynxError as error:
            return PollOutcome(
                key=target.key,
                finished_at=self._wall(),
                reading=None,
                error_reason=error.reason,
                error=str(error),
                status=error.status,
                attempts=error.attempts,
            )
        try:
            reading = parse_payload(
                answer.payload,
                duration_unit=config.units.duration,
                energy_unit=config.units.energy,
                want_operator=target.operator_status,
            )
        except BadPayload as error:
            return PollOutcome(
                key=target.key,
                finished_at=self._wall(),
                reading=None,
                error_reason="bad_payload",
                error=str(error),
                status=answer.status,
                attempts=answer.attempts,
                duration=answer.duration,
            )
        return PollOutcome(
            key=target.key,
            finished_at=self._wall(),
            reading=reading,
            status=answer.status,
            attempts=answer.attempts,
            duration=answer.duration,
        )

    # --- committer ----------------------------------------------------------------

    def _commit_loop(self) -> None:
        # At most one commit per BATCH_WINDOW: under load a batch gathers what
        # lands meanwhile (one snapshot swap instead of hundreds), while a
        # lone outcome after a quiet spell is applied at once, sparing a wake-up.
        last_commit = -math.inf
        while not self._stop.is_set():
            try:
                first = self._done.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            deadline = last_commit + BATCH_WINDOW
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._done.get(timeout=remaining))
                except queue.Empty:
                    break
            while True:
                try:
                    batch.append(self._done.get_nowait())
                except queue.Empty:
                    break
            last_commit = time.monotonic()
            self.commit(batch)

    def commit(self, batch: Sequence[PollOutcome]) -> None:
        """Apply a batch to the store; count errors; log state changes."""
        before = self._store.current().states
        after = self._store.apply(batch).states
        # A batch can hold two polls of one target (a quick poll right after a slow
        # one); replay the outcomes in order so each change is logged once, against
        # the state it really changed from, not the batch's first state.
        # Only the batch's own keys are tracked: copying the whole map per batch
        # re-hashed every key and was a quarter of the GIL time at 10,000 targets.
        running: dict[TargetKey, TargetState] = {}
        for outcome in batch:
            old = running.get(outcome.key) or before.get(outcome.key)
            final = after.get(outcome.key)
            if final is None:
                continue  # removed by a reload meanwhile
            self._count_errors(final.target, outcome)
            if old is not None:
                new = apply_outcome(old, outcome)
                running[outcome.key] = new
                self._log_change(old, new, outcome)

    def _count_errors(self, target: Target, outcome: PollOutcome) -> None:
        if outcome.error_reason is not None:
            self._stats.count_poll_error(target.actor_id, outcome.error_reason)
        if outcome.reading is not None:
            for reason in sorted({p.reason for p in outcome.reading.problems}):
                self._stats.count_poll_error(target.actor_id, reason)

    def _log_change(self, old: TargetState, new: TargetState, outcome: PollOutcome) -> None:
        was = (old.polled, old.up, old.last_error_reason)
        now = (new.polled, new.up, new.last_error_reason)
        if was == now:
            return
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
        if new.up:
            if old.polled:
                self._log.info("target up", **fields)
            else:
                self._log.debug("target up", **fields)
        else:
            self._log.warning(
                "target down", reason=new.last_error_reason, error=new.last_error, **fields
            )

    def wait_until_ready(self, timeout: float) -> bool:
        """Block until every target was polled once (used by --once)."""
        deadline = time.monotonic() + timeout
        snapshot = self._store.current()
        while not snapshot.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return False
            snapshot = self._store.wait_for_change(snapshot.generation, min(remaining, 0.5))
        return True
