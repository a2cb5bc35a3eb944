"""The poller's schedule: evenly spread, non-drifting, isolated, fair under holds.

Runs the real poller (its scheduler thread, its store, its worker threads) in
virtual time (``tests/virtual_time.py``) against fake clients that answer after a
given virtual latency: a schedule of seconds runs at once, and every instant a
poll goes out is exact, so the checks need no slack for a loaded machine.
"""

from __future__ import annotations

import gc
import io
import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import pytest

from exporter.config import Config, parse_config
from exporter.kinds import KINDS
from exporter.kinds.base import Family, GetJson, Problem, Result, Sample
from exporter.logs import SecretScrubber, configure
from exporter.lynx.client import Answer, LynxClient, RateLimitedError, TokenHeld
from exporter.lynx.ratelimit import TokenGate
from exporter.lynx.upstream import Dropped
from exporter.metrics.stats import Stats
from exporter.polling.plan import Plan
from exporter.polling.poller import BATCH_WINDOW, COMMIT_DELAY, IDLE_WAKE, TICK, Poller, sleep_for
from exporter.polling.polls import Deferred, poll_target
from exporter.polling.store import SnapshotStore
from exporter.targets import EV_DASHBOARD, Target, build_targets
from tests.virtual_time import VirtualClock, VirtualEvent, VirtualExecutor


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


class _HeldMeanwhile:
    """A client whose token became held after the poller looked (a race)."""

    def __init__(self, gate: TokenGate, token: str) -> None:
        self._gate, self._token = gate, token
        self.calls = 0

    def get_json(self, path: str, params: object, credential: object) -> object:
        self.calls += 1
        if self._gate.held_until(self._token) is None:
            self._gate.hold(self._token, 30.0)  # another poll's 429, just now
        until = self._gate.held_until(self._token)
        assert until is not None
        raise TokenHeld(until)  # what the real client raises: nothing was sent


def test_a_poll_on_a_held_token_is_deferred_not_failed() -> None:
    config = parse_config("lynx: {token: tkn}\nactors: [{id: 7}]\n", environ={})
    (target,) = build_targets(config)
    gate = TokenGate()
    client = _HeldMeanwhile(gate, "tkn")
    plan = Plan(config, {target.key: target}, cast(LynxClient, client), gate)
    # Held when the poll starts: no request at all.
    gate.hold("tkn", 5.0)
    held = poll_target(plan, KINDS[target.kind], target, time.time)
    assert isinstance(held, Deferred) and client.calls == 1
    assert held.until == pytest.approx(time.monotonic() + 5.0, abs=0.5)
    # Held by another poll's 429 after it looked: the client sent nothing either.
    fresh_gate = TokenGate()
    client = _HeldMeanwhile(fresh_gate, "tkn")
    plan = Plan(config, {target.key: target}, cast(LynxClient, client), fresh_gate)
    raced = poll_target(plan, KINDS[target.kind], target, time.time)
    assert isinstance(raced, Deferred) and client.calls == 1
    assert raced.until == pytest.approx(time.monotonic() + 30.0, abs=0.5)


@dataclass(frozen=True)
class _Nothing:
    problems: tuple[Problem, ...] = ()
    notices: tuple[Problem, ...] = ()
    dropped: tuple[Dropped, ...] = ()


@dataclass(frozen=True)
class _ByActor:
    """A request kind asking ``/<actor id>``, whose answers all read fine."""

    name: str = EV_DASHBOARD
    families: tuple[Family, ...] = ()

    def fetch(self, get_json: GetJson, target: Target, now: datetime) -> Answer:
        return get_json(f"/{target.actor_id}", {}, target.token)

    def parse(self, payload: object, target: Target, config: Config, now: float) -> _Nothing:
        return _Nothing()

    def samples(self, target: Target, reading: Result) -> Iterator[Sample]:
        return iter(())


class _OneActorAlwaysLimited:
    """Answers 429 (holding the shared token ``hold`` seconds) to one actor's
    every request and 200 to the rest, each after a round trip of 1 ms (none
    takes no time at all); records the order requests went out."""

    def __init__(
        self, clock: VirtualClock, gate: TokenGate, token: str, limited: int, hold: float
    ) -> None:
        self._clock, self._gate, self._token = clock, gate, token
        self._limited, self._hold = limited, hold
        self.sent: list[int] = []

    def get_json(self, path: str, params: object, credential: object) -> Answer:
        actor = int(path.strip("/"))
        if self._gate.delay(self._token) > 0:  # what the real client does before sending
            until = self._gate.held_until(self._token)
            assert until is not None
            raise TokenHeld(until)
        self.sent.append(actor)
        self._clock.sleep(0.001)
        if actor == self._limited:
            self._gate.hold(self._token, self._hold)
            raise RateLimitedError("HTTP 429", retry_after=self._hold, attempts=1)
        return Answer(payload={}, status=200, attempts=1, duration=0.0)

    def close(self) -> None:
        pass


def _plan_of(text: str, client: object, gate: TokenGate | None = None) -> Plan:
    config = parse_config(text, environ={})
    targets = build_targets(config)
    gate = TokenGate() if gate is None else gate
    return Plan(config, {t.key: t for t in targets}, cast(LynxClient, client), gate)


def _config_text(interval: str, actors: int, workers: int = 4) -> str:
    listed = ", ".join(f"{{id: {n}}}" for n in range(1, actors + 1))
    return (
        f"lynx: {{token: tkn, max_concurrency: {workers}, rate_limit_per_second: 0}}\n"
        f"poll: {{interval: {interval}}}\n"
        "machine_status: {enabled: false}\n"
        f"actors: [{listed}]\n"
    )


def _started_poller(plan: Plan, clock: VirtualClock) -> Poller:
    """A poller of ``plan`` with the ``_ByActor`` kind, running in virtual time."""
    poller = Poller(
        SnapshotStore(plan.targets.values(), plan.config.poll.stale_after),
        Stats(started_at=clock.wall()),
        configure("error", "json", SecretScrubber(), io.StringIO()),
        stop=VirtualEvent(clock),
        kinds={EV_DASHBOARD: _ByActor()},
        clock=clock,
        executor=lambda workers: VirtualExecutor(clock, workers),
    )
    poller.configure(plan)
    poller.start()
    return poller


class _Slow:
    """Answers every request after ``seconds`` of virtual time (``latency`` may name
    other seconds per path); records when each was sent."""

    def __init__(
        self, clock: VirtualClock, seconds: float, latency: dict[str, float] | None = None
    ) -> None:
        self._clock = clock
        self._seconds = seconds
        self._latency = latency or {}
        self.sent: list[float] = []
        self.paths: list[str] = []

    def get_json(self, path: str, params: object, credential: object) -> Answer:
        self.sent.append(self._clock.monotonic())
        self.paths.append(path)
        seconds = self._latency.get(path, self._seconds)
        self._clock.sleep(seconds)
        return Answer(payload={}, status=200, attempts=1, duration=seconds)

    def times_of(self, path: str) -> list[float]:
        return [t for p, t in zip(self.paths, self.sent, strict=True) if p == path]

    def close(self) -> None:
        pass


def _polled(
    clock: VirtualClock, plan: Plan, until: Callable[[], bool] | None, seconds: float
) -> Poller:
    """Run a poller of ``plan`` until ``until`` holds (failing after ``seconds``
    virtual seconds), or for ``seconds``; then stop it. The poller, for its store."""
    poller = _started_poller(plan, clock)
    try:
        if until is None:
            clock.sleep(seconds)
        else:
            clock.run_until(until, seconds)
    finally:
        poller.stop()
    return poller


def test_requests_are_spread_evenly_over_the_interval(clock: VirtualClock) -> None:
    client = _Slow(clock, 0.01)
    _polled(clock, _plan_of(_config_text("2s", 8), client), lambda: len(client.sent) >= 16, 10.0)
    gaps = [b - a for a, b in itertools.pairwise(client.sent[:16])]  # 8 targets: 0.25 s apart
    assert statistics.median(gaps) == pytest.approx(0.25, abs=TICK), gaps
    assert min(gaps) > 0.25 - TICK, gaps  # no burst: never two at once


def test_schedule_does_not_drift(clock: VirtualClock) -> None:
    """Polls that take a while (30 ms of a 500 ms interval) do not push the next
    one later: each lands on its grid point, however many rounds have gone by."""
    client = _Slow(clock, 0.03)
    paths = [f"/{n}" for n in range(1, 9)]
    _polled(
        clock,
        _plan_of(_config_text("500ms", 8), client),
        lambda: min(len(client.times_of(p)) for p in paths) >= 40,
        30.0,
    )
    for path in paths:
        times = client.times_of(path)
        for k, moment in enumerate(times[:40]):  # on first + k * interval, no lag piled up
            assert moment - (times[0] + k * 0.5) == pytest.approx(0.0, abs=TICK), (path, k)


def test_a_hanging_target_never_delays_the_others(clock: VirtualClock) -> None:
    """One target's poll hangs 30 s; with two workers, the others keep their 1 s
    grid meanwhile: three rounds of them in three intervals, all up."""
    client = _Slow(clock, 0.01, latency={"/1": 30.0})
    plan = _plan_of(_config_text("1s", 8, workers=2), client)
    started = clock.monotonic()
    others = [f"/{n}" for n in range(2, 9)]
    poller = _polled(clock, plan, lambda: all(len(client.times_of(p)) >= 3 for p in others), 6.0)
    assert clock.monotonic() - started < 3.0, clock.monotonic() - started
    states = poller._store.current().states
    assert all(s.up for k, s in states.items() if k.actor_id != 1)
    assert client.times_of("/1") == [started]  # still hanging: never sent twice


def test_a_target_still_in_flight_is_skipped_not_piled_up(clock: VirtualClock) -> None:
    client = _Slow(clock, 1.2)  # longer than the interval
    _polled(clock, _plan_of(_config_text("500ms", 7, workers=8), client), None, 3.0)
    for path in {f"/{n}" for n in range(1, 8)}:
        gaps = [b - a for a, b in itertools.pairwise(client.times_of(path))]
        # Never a second request while the first is running: gaps >= latency.
        assert gaps and all(gap >= 1.2 for gap in gaps), (path, gaps)


def test_a_poll_deferred_longest_goes_first_when_the_hold_ends(clock: VirtualClock) -> None:
    """One actor's every request gets a 429 on the token both actors share. When a
    hold ends, the poll deferred longest goes out first, so the healthy actor's
    poll goes out at every opening instead of losing the race to the 429 actor's
    and waiting out hold after hold. One worker makes the order the whole story."""
    gate = TokenGate(clock.monotonic)
    client = _OneActorAlwaysLimited(clock, gate, "tkn", limited=1, hold=0.6)
    plan = _plan_of(_config_text("200ms", 2, workers=1), client, gate)
    _polled(clock, plan, lambda: client.sent.count(1) >= 9, 20.0)
    # Each 429 (a 1 here) holds the token 0.6 s, three grid points; the healthy
    # actor's next grid point comes first after it, so its poll is the one deferred
    # longest and leads every opening: 1, 2, 1, 2, ... (ordered by float rounding,
    # the 429 actor's led about every other one: 1, 1, 2, 1, 1, 2).
    assert (1, 1) not in itertools.pairwise(client.sent), client.sent


def test_a_reload_to_a_longer_interval_drops_the_backlog_instead_of_bursting_it(
    clock: VirtualClock,
) -> None:
    """Over budget (20 targets, one worker, 50 ms each: a 1 s round every 100 ms),
    polls pile up waiting for the worker. Reloaded to a 20 s interval, targets go
    out on the new grid (one per second), not as the old backlog at full speed."""
    client = _Slow(clock, 0.05)
    poller = _started_poller(_plan_of(_config_text("100ms", 20, workers=1), client), clock)
    try:
        clock.sleep(1.5)  # over budget from the start: a backlog of ~18 polls
        reloaded = clock.monotonic()
        poller.configure(_plan_of(_config_text("20s", 20, workers=1), client))
        clock.sleep(1.5)
    finally:
        poller.stop()
    before = [t for t in client.sent if reloaded - 1.0 <= t < reloaded]
    # Up to 2 polls already handed to the worker still go; after them, the grid.
    after = [t for t in client.sent if reloaded + 0.25 <= t < reloaded + 1.5]
    assert len(before) >= 19, len(before)  # it was indeed polling flat out
    assert len(after) <= 2, [round(t - reloaded, 2) for t in after]


def test_a_reload_collects_its_garbage_when_the_new_plan_is_adopted(
    clock: VirtualClock,
) -> None:
    """A reload's garbage (the parsed config, the old schedule) is collected by
    the scheduler as it adopts the new plan, not left to set off a full
    collection a few seconds later, in the middle of whatever is running then."""
    full_collections: list[str] = []

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections.append(threading.current_thread().name)

    poller = _started_poller(_plan_of(_config_text("30s", 1), _Slow(clock, 0.0)), clock)
    gc.callbacks.append(observe)
    try:
        poller.configure(_plan_of(_config_text("30s", 2), _Slow(clock, 0.0)))
        clock.run_until(lambda: "poll-scheduler" in full_collections, 5.0, what="no collection")
    finally:
        gc.callbacks.remove(observe)
        poller.stop()


@pytest.mark.parametrize(
    ("delay", "batch_age", "expected"),
    [
        (None, None, IDLE_WAKE),  # nothing scheduled: look again in a while
        (1e-4, None, TICK),  # the next grid point is due at once: wait a tick
        (0.2, None, 0.2),
        (30.0, None, IDLE_WAKE),
        (BATCH_WINDOW, BATCH_WINDOW / 2, BATCH_WINDOW / 2),  # a pending batch is due first
        (1e-4, BATCH_WINDOW - TICK / 5, TICK / 5),  # a batch due within the tick is not held
    ],
)
def test_the_scheduler_sleeps_until_its_next_event_but_at_least_a_tick(
    delay: float | None, batch_age: float | None, expected: float
) -> None:
    assert sleep_for(delay, batch_age) == pytest.approx(expected)


def test_a_poll_finished_while_the_scheduler_sleeps_long_is_committed_soon(
    clock: VirtualClock,
) -> None:
    """With one target a minute, the scheduler sleeps up to IDLE_WAKE; a finished
    poll wakes it (it would sleep past COMMIT_DELAY), so the result lands at once."""
    client = _Slow(clock, 0.1)
    poller = _started_poller(_plan_of(_config_text("60s", 1), client), clock)
    try:
        clock.run_until(lambda: poller._store.current().ready, 5.0, step=0.001)
    finally:
        poller.stop()
    assert clock.monotonic() - client.sent[0] < 0.1 + COMMIT_DELAY


def _off_grid(moment: float, epoch: float, phase: float, interval: float) -> float:
    """How far ``moment`` lies from the nearest point of a grid."""
    offset = (moment - epoch - phase) % interval
    return min(offset, interval - offset)


def test_a_target_busy_past_its_grid_points_goes_at_the_first_one_after_its_poll(
    clock: VirtualClock,
) -> None:
    """One target every 250 ms whose polls take 600 ms: it skips the grid points its
    poll runs through (never queued) and goes at the next one, on the grid."""
    client = _Slow(clock, 0.6)
    _polled(clock, _plan_of(_config_text("250ms", 1), client), lambda: len(client.sent) >= 4, 10.0)
    gaps = [b - a for a, b in itertools.pairwise(client.sent[:4])]
    assert gaps == pytest.approx([0.75] * 3, abs=TICK), gaps


def test_a_target_busy_through_a_reload_goes_on_to_its_new_grid(clock: VirtualClock) -> None:
    """Two actors every 2 s (phases 0 and 1 s), each poll 0.5 s, reloaded to 0.8 s
    (phases 0 and 0.4 s) while actor 2's poll runs: once it ends, actor 2 goes on
    the new grid, not on a point reckoned from its old one (that would be 1.8 s)."""
    client = _Slow(clock, 0.5)
    poller = _started_poller(_plan_of(_config_text("2s", 2), client), clock)
    try:
        clock.run_until(lambda: len(client.sent) >= 2, 5.0, what="actor 2's first poll")
        epoch = client.sent[0]
        assert client.paths[:2] == ["/1", "/2"]
        clock.sleep(epoch + 1.25 - clock.monotonic())  # mid-poll
        poller.configure(_plan_of(_config_text("800ms", 2), client))
        clock.run_until(lambda: client.paths.count("/2") >= 4, 10.0, what="actor 2's new grid")
    finally:
        poller.stop()
    later = [(p, t) for p, t in zip(client.paths, client.sent, strict=True) if t > epoch + 1.3]
    assert later, client.sent
    for path, moment in later:
        phase = 0.0 if path == "/1" else 0.4
        assert _off_grid(moment, epoch, phase, 0.8) <= TICK, (path, round(moment - epoch, 3))
    assert min(t for p, t in later if p == "/2") - epoch == pytest.approx(2.0, abs=TICK)


def test_an_over_budget_fleet_keeps_every_worker_busy(clock: VirtualClock) -> None:
    """Ten targets every 50 ms, one worker, 10 ms a poll: over budget, so the
    worker should go from one poll to the next without waiting for the
    scheduler's tick or its idle wake-up."""
    client = _Slow(clock, 0.01)
    _polled(clock, _plan_of(_config_text("50ms", 10, workers=1), client), None, 2.5)
    in_last_two_seconds = [t for t in client.sent if t >= client.sent[0] + 0.5]
    assert len(in_last_two_seconds) >= 195, len(in_last_two_seconds)  # at most 200
