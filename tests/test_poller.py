"""The poller's schedule over real HTTP: evenly spread, non-drifting, isolated.

Runs the daemon in-process (the real client, store and threads) against the
simulator, and reads arrival times from the simulator's request log.
"""

from __future__ import annotations

import gc
import io
import itertools
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import pytest

from exporter.app import Exporter
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
from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.targets import EV_DASHBOARD, Target, build_targets
from tests.harness import wait_for


def make_config(sim: SimulatorServer, interval: str, **lynx: object) -> Config:
    actor = sim.fleet.actor_ids()[0]
    machines = ", ".join(f"{{id: {m.id}}}" for m in sim.fleet.machines(actor))
    settings: dict[str, object] = {
        "timeout": "5s",
        "max_retries": 0,
        "rate_limit_per_second": 0,
        "max_concurrency": 2,
        **lynx,
    }
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    return parse_config(
        f"""
lynx: {{base_url: "{sim.url}", token: sim-token{extra}}}
poll: {{interval: {interval}}}
machine_status: {{enabled: false}}
actors: [{{id: {actor}, machines: [{machines}]}}]
""",
        environ={},
    )


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Fleet(FleetSpec(actors=1, machines_per_actor=7))) as server:
        yield server


def run(config: Config) -> Exporter:
    scrubber = SecretScrubber()
    exporter = Exporter(
        lambda: config, configure("error", "json", scrubber, io.StringIO()), scrubber
    )
    exporter.start()
    return exporter


def arrivals_by_target(sim: SimulatorServer) -> dict[str | None, list[float]]:
    by_target: dict[str | None, list[float]] = defaultdict(list)
    for request in sim.requests():
        by_target[request.machine].append(request.monotonic)
    return by_target


def test_requests_are_spread_evenly_over_the_interval(sim: SimulatorServer) -> None:
    exporter = run(make_config(sim, "2s"))  # 8 targets → one every 0.25 s
    try:
        wait_for(lambda: len(sim.requests()) >= 16, timeout=10)
    finally:
        exporter.stop()
    times = sorted(r.monotonic for r in sim.requests())[:16]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(gaps) == pytest.approx(0.25, abs=0.05)
    assert min(gaps) > 0.15, gaps  # no burst: never two at once


def test_schedule_does_not_drift(sim: SimulatorServer) -> None:
    exporter = run(make_config(sim, "500ms"))
    try:
        wait_for(
            lambda: min(map(len, arrivals_by_target(sim).values()), default=0) >= 8, timeout=15
        )
    finally:
        exporter.stop()
    for machine, times in arrivals_by_target(sim).items():
        first = times[0]
        # Each poll lands on its grid point first + k*interval (no accumulated lag).
        for k, moment in enumerate(times[:8]):
            assert moment - (first + k * 0.5) == pytest.approx(0.0, abs=0.08), (machine, k)


def test_a_hanging_target_never_delays_the_others(sim: SimulatorServer) -> None:
    actor = sim.fleet.actor_ids()[0]
    stuck = sim.fleet.machines(actor)[0]
    sim.add_fault(Fault(kind=FaultKind.HANG, seconds=30, actor_id=actor, machine=str(stuck.id)))
    exporter = run(make_config(sim, "1s", max_concurrency=2, timeout="3s"))
    try:
        started = time.monotonic()
        others = {str(m.id) for m in sim.fleet.machines(actor)[1:]}

        def others_polled_three_times() -> bool:
            by_target = arrivals_by_target(sim)
            return all(len(by_target.get(m, [])) >= 3 for m in others)

        wait_for(others_polled_three_times, timeout=6)
        # Three rounds of the healthy targets in about three intervals, while one
        # worker sits on the hanging request.
        assert time.monotonic() - started < 4.5
        states = exporter.store.current().states
        healthy = [s for k, s in states.items() if k.machine_ref != f"id:{stuck.id}"]
        assert all(s.up for s in healthy)
    finally:
        exporter.stop()


def test_a_target_still_in_flight_is_skipped_not_piled_up(sim: SimulatorServer) -> None:
    sim.latency = 1.2  # longer than the interval
    exporter = run(make_config(sim, "500ms", max_concurrency=8))
    try:
        time.sleep(3.0)
    finally:
        exporter.stop()
    for machine, times in arrivals_by_target(sim).items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Never a second request while the first is running: gaps >= latency.
        assert all(gap >= 1.15 for gap in gaps), (machine, gaps)


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
    every request and 200 to the rest; records the order requests went out."""

    def __init__(self, gate: TokenGate, token: str, limited: int, hold: float) -> None:
        self._gate, self._token, self._limited, self._hold = gate, token, limited, hold
        self.sent: list[int] = []

    def get_json(self, path: str, params: object, credential: object) -> Answer:
        actor = int(path.strip("/"))
        if self._gate.delay(self._token) > 0:  # what the real client does before sending
            until = self._gate.held_until(self._token)
            assert until is not None
            raise TokenHeld(until)
        self.sent.append(actor)
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


def _started_poller(plan: Plan) -> Poller:
    """A poller of ``plan`` with the ``_ByActor`` kind, running."""
    poller = Poller(
        SnapshotStore(plan.targets.values(), plan.config.poll.stale_after),
        Stats(started_at=time.time()),
        configure("error", "json", SecretScrubber(), io.StringIO()),
        stop=threading.Event(),
        kinds={EV_DASHBOARD: _ByActor()},
    )
    poller.configure(plan)
    poller.start()
    return poller


def test_a_poll_deferred_longest_goes_first_when_the_hold_ends() -> None:
    """One actor's every request gets a 429 on the token both actors share. When a
    hold ends, the poll deferred longest goes out first, so the healthy actor's
    poll goes out at every opening instead of losing the race to the 429 actor's
    and waiting out hold after hold. One worker makes the order the whole story."""
    gate = TokenGate()
    client = _OneActorAlwaysLimited(gate, "tkn", limited=1, hold=0.6)
    text = (
        "lynx: {token: tkn, max_concurrency: 1, rate_limit_per_second: 0}\n"
        "poll: {interval: 200ms}\n"
        "machine_status: {enabled: false}\n"
        "actors: [{id: 1}, {id: 2}]\n"
    )
    poller = _started_poller(_plan_of(text, client, gate))
    try:
        wait_for(lambda: client.sent.count(1) >= 9, timeout=20, what="nine holds")
    finally:
        poller.stop()
    # Each 429 (a 1 here) holds the token 0.6 s, three grid points; the healthy
    # actor's next grid point comes first after it, so its poll is the one deferred
    # longest and leads every opening: 1, 2, 1, 2, ... (ordered by float rounding,
    # the 429 actor's led about every other one: 1, 1, 2, 1, 1, 2).
    assert (1, 1) not in itertools.pairwise(client.sent), client.sent


class _Slow:
    """Answers every request after ``seconds``; records when each was sent."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.sent: list[float] = []
        self.paths: list[str] = []

    def get_json(self, path: str, params: object, credential: object) -> Answer:
        self.sent.append(time.monotonic())
        self.paths.append(path)
        time.sleep(self._seconds)
        return Answer(payload={}, status=200, attempts=1, duration=self._seconds)

    def close(self) -> None:
        pass


def test_a_reload_to_a_longer_interval_drops_the_backlog_instead_of_bursting_it() -> None:
    """Over budget (20 targets, one worker, 50 ms each: a 1 s round every 100 ms),
    polls pile up waiting for the worker. Reloaded to a 20 s interval, targets go
    out on the new grid (one per second), not as the old backlog at full speed."""
    actors = ", ".join(f"{{id: {n}}}" for n in range(1, 21))

    def text(interval: str) -> str:
        return (
            "lynx: {token: tkn, max_concurrency: 1, rate_limit_per_second: 0}\n"
            f"poll: {{interval: {interval}}}\n"
            "machine_status: {enabled: false}\n"
            f"actors: [{actors}]\n"
        )

    client = _Slow(0.05)
    poller = _started_poller(_plan_of(text("100ms"), client))
    try:
        time.sleep(1.5)  # over budget from the start: a backlog of ~18 polls
        reloaded = time.monotonic()
        poller.configure(_plan_of(text("20s"), client))
        time.sleep(1.5)
    finally:
        poller.stop()
    before = [t for t in client.sent if reloaded - 1.0 <= t < reloaded]
    # Up to 2 polls already handed to the worker still go; after them, the grid.
    after = [t for t in client.sent if reloaded + 0.25 <= t < reloaded + 1.5]
    assert len(before) >= 15, len(before)  # it was indeed polling flat out
    assert len(after) <= 3, [round(t - reloaded, 2) for t in after]


def test_a_reload_collects_its_garbage_when_the_new_plan_is_adopted() -> None:
    """A reload's garbage (the parsed config, the old schedule) is collected by
    the scheduler as it adopts the new plan, not left to set off a full
    collection a few seconds later, in the middle of whatever is running then."""
    text = "lynx: {token: tkn}\nmachine_status: {enabled: false}\nactors: [{id: 1}]\n"
    full_collections: list[str] = []

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections.append(threading.current_thread().name)

    poller = _started_poller(_plan_of(text, _Slow(0.0)))
    gc.callbacks.append(observe)
    try:
        poller.configure(_plan_of(text.replace("id: 1", "id: 2"), _Slow(0.0)))
        wait_for(lambda: "poll-scheduler" in full_collections, 5.0, what="no collection")
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


def test_a_poll_finished_while_the_scheduler_sleeps_long_is_committed_soon() -> None:
    """With one target a minute, the scheduler sleeps up to IDLE_WAKE; a finished
    poll wakes it (it would sleep past COMMIT_DELAY), so the result lands at once."""
    text = "lynx: {token: tkn}\nmachine_status: {enabled: false}\nactors: [{id: 1}]\n"
    client = _Slow(0.1)
    poller = _started_poller(_plan_of(text, client))
    try:
        wait_for(lambda: bool(client.sent), 5.0, what="no poll sent")
        wait_for(lambda: poller._store.current().ready, 5.0, what="never committed")
        assert time.monotonic() - client.sent[0] < 0.1 + COMMIT_DELAY
    finally:
        poller.stop()


def _off_grid(moment: float, epoch: float, phase: float, interval: float) -> float:
    """How far ``moment`` lies from the nearest point of a grid."""
    offset = (moment - epoch - phase) % interval
    return min(offset, interval - offset)


def test_a_target_busy_past_its_grid_points_goes_at_the_first_one_after_its_poll() -> None:
    """One target every 250 ms whose polls take 600 ms: it skips the grid points its
    poll runs through (never queued) and goes at the next one, on the grid."""
    text = "lynx: {token: tkn}\npoll: {interval: 250ms}\nmachine_status: {enabled: false}\n"
    client = _Slow(0.6)
    poller = _started_poller(_plan_of(text + "actors: [{id: 1}]\n", client))
    try:
        wait_for(lambda: len(client.sent) >= 4, 10.0, what="four polls")
    finally:
        poller.stop()
    gaps = [b - a for a, b in itertools.pairwise(client.sent[:4])]
    assert gaps == pytest.approx([0.75] * 3, abs=0.06), gaps


def test_a_target_busy_through_a_reload_goes_on_to_its_new_grid() -> None:
    """Two actors every 2 s (phases 0 and 1 s), each poll 0.5 s, reloaded to 0.8 s
    (phases 0 and 0.4 s) while actor 2's poll runs: once it ends, actor 2 goes on
    the new grid, not on a point reckoned from its old one (that would be 1.8 s)."""

    def text(interval: str) -> str:
        return (
            "lynx: {token: tkn, rate_limit_per_second: 0}\n"
            f"poll: {{interval: {interval}}}\n"
            "machine_status: {enabled: false}\n"
            "actors: [{id: 1}, {id: 2}]\n"
        )

    client = _Slow(0.5)
    poller = _started_poller(_plan_of(text("2s"), client))
    try:
        wait_for(lambda: len(client.sent) >= 2, 5.0, what="actor 2's first poll")
        epoch = client.sent[0]
        assert client.paths[:2] == ["/1", "/2"]
        time.sleep(max(0.0, epoch + 1.25 - time.monotonic()))  # mid-poll
        poller.configure(_plan_of(text("800ms"), client))
        wait_for(lambda: client.paths.count("/2") >= 4, 10.0, what="actor 2 on its new grid")
    finally:
        poller.stop()
    later = [(p, t) for p, t in zip(client.paths, client.sent, strict=True) if t > epoch + 1.3]
    assert later, client.sent
    for path, moment in later:
        phase = 0.0 if path == "/1" else 0.4
        assert _off_grid(moment, epoch, phase, 0.8) < 0.06, (path, round(moment - epoch, 3))
    assert min(t for p, t in later if p == "/2") - epoch == pytest.approx(2.0, abs=0.06)


def test_an_over_budget_fleet_keeps_every_worker_busy() -> None:
    """Ten targets every 50 ms, one worker, 10 ms a poll: over budget, so the
    worker should go from one poll to the next without waiting for the
    scheduler's tick or its idle wake-up."""
    actors = ", ".join(f"{{id: {n}}}" for n in range(1, 11))
    text = (
        "lynx: {token: tkn, max_concurrency: 1, rate_limit_per_second: 0}\n"
        "poll: {interval: 50ms}\nmachine_status: {enabled: false}\n"
        f"actors: [{actors}]\n"
    )
    client = _Slow(0.01)
    poller = _started_poller(_plan_of(text, client))
    try:
        time.sleep(2.5)
    finally:
        poller.stop()
    in_last_two_seconds = [t for t in client.sent if t >= client.sent[0] + 0.5]
    assert len(in_last_two_seconds) >= 150, len(in_last_two_seconds)  # at most ~200
