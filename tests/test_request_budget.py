"""The request budget, observed where the vendor observes it: at the API.

The real client, rate limiter, token gate and poller run in virtual time
(``tests/virtual_vendor.py``) against the simulator's routes, which record every
request's arrival; the checks run on those records, on the log events and on
``/metrics`` as rendered at each instant. What the running process itself says
about its budget is checked on a real process at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.simulator.server import RecordedRequest
from tests.harness import (
    config_check,
    running_exporter,
    select,
    simulator_config,
    wait_for,
    write_config,
)
from tests.virtual_time import VirtualClock
from tests.virtual_vendor import VENDOR_URL, virtual_daemon

RATE = 5.0  # requests per second
SHARED_TOKEN = "shared-token"
OTHER_TOKEN = "other-token"
RETRY_AFTER = 2.0
BASELINE = 2.0  # seconds of normal polling observed before the 429


def _actor(fleet: Fleet, actor_id: int, **extra: Any) -> dict[str, Any]:
    return {"id": actor_id, "machines": [{"id": m.id} for m in fleet.machines(actor_id)], **extra}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def budget_fleet() -> Fleet:
    # 1 actor-wide + 14 machine targets: 3 s of budget per round at 5/s.
    return Fleet(FleetSpec(seed=11, actors=1, machines_per_actor=14))


@pytest.fixture
def budget_simulator(budget_fleet: Fleet) -> SimulatorServer:
    return SimulatorServer(budget_fleet, tokens="sim-token")  # its routes, never its socket


def _busiest_second(arrivals: Sequence[float]) -> tuple[int, list[float]]:
    """The most requests in any window [t, t + 1 s) that starts at an arrival."""
    ordered = sorted(arrivals)
    best: list[float] = []
    end = 0
    for start, moment in enumerate(ordered):
        end = max(end, start)
        while end < len(ordered) and ordered[end] < moment + 1.0:
            end += 1
        if end - start > len(best):
            best = ordered[start:end]
    return len(best), best


def test_busiest_second_counts_half_open_windows() -> None:
    assert _busiest_second([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])[0] == 5
    assert _busiest_second([0.0, 0.2, 0.4, 0.6, 0.8, 0.999])[0] == 6
    assert _busiest_second([])[0] == 0


def test_rate_limit_is_never_exceeded_and_fully_used(
    budget_simulator: SimulatorServer, budget_fleet: Fleet, clock: VirtualClock
) -> None:
    actor_id = budget_fleet.actor_ids()[0]
    targets = 1 + len(budget_fleet.machines(actor_id))
    document = simulator_config(
        VENDOR_URL,
        [_actor(budget_fleet, actor_id)],
        interval="1s",  # asks for 15 requests/s: three times the budget
        stale_after="30s",
        rate_limit_per_second=RATE,
        max_concurrency=4,
    )
    with virtual_daemon(document, budget_simulator, clock) as daemon:
        clock.run_until(daemon.ready, 20.0, what="every target polled once")
        daemon.vendor.clear_requests()
        started = clock.monotonic()
        clock.sleep(2 * targets / RATE)  # two full rounds at the budget
        records = daemon.vendor.requests()
        elapsed = clock.monotonic() - started

    arrivals = [r.monotonic for r in records]
    count, window = _busiest_second(arrivals)
    assert count <= RATE, (
        f"{count} requests within one second (limit {RATE:g}): arrivals "
        + ", ".join(f"{t - window[0]:.4f}" for t in window)
    )
    throughput = len(records) / elapsed
    assert throughput >= 0.9 * RATE, f"{throughput:.2f} requests/s of a {RATE:g}/s budget"
    polled = {r.machine for r in records}
    assert len(polled) == targets, f"only {len(polled)} of {targets} targets polled in two rounds"


@pytest.fixture
def token_fleet() -> Fleet:
    return Fleet(FleetSpec(seed=13, actors=3, machines_per_actor=3))


def _bearer(record: RecordedRequest) -> str | None:
    header = record.authorization or ""
    return header.removeprefix("Bearer ") if header.startswith("Bearer ") else None


def test_429_holds_back_every_target_sharing_the_token(
    token_fleet: Fleet, clock: VirtualClock
) -> None:
    first, second, third = token_fleet.actor_ids()
    tokens = {first: SHARED_TOKEN, second: SHARED_TOKEN, third: OTHER_TOKEN}
    simulator = SimulatorServer(token_fleet, tokens=tokens)
    document = simulator_config(
        VENDOR_URL,
        [
            _actor(token_fleet, first),
            _actor(token_fleet, second),
            _actor(token_fleet, third, token=OTHER_TOKEN),
        ],
        token=SHARED_TOKEN,
        interval="500ms",
        stale_after="30s",
        max_concurrency=4,
        retry_backoff_max="1s",  # Retry-After 2 s is longer: the gate holds the token
    )
    with virtual_daemon(document, simulator, clock) as daemon:
        clock.run_until(daemon.ready, 20.0, what="every target polled once")
        daemon.vendor.clear_requests()
        clock.sleep(BASELINE)  # the other token's pace before any 429
        simulator.add_fault(
            Fault(
                FaultKind.STATUS,
                status=429,
                retry_after=f"{RETRY_AFTER:g}",
                actor_id=first,
                remaining=1,
            )
        )
        clock.run_until(lambda: not simulator.faults(), 10.0, what="the 429 to be served")
        clock.sleep(RETRY_AFTER + 1.5)
        records = daemon.vendor.requests()

    limited = [r for r in records if r.status == 429]
    assert len(limited) == 1 and limited[0].actor_id == first, limited
    at = limited[0].monotonic
    during = [r for r in records if at < r.monotonic < at + RETRY_AFTER]
    held = [r for r in during if _bearer(r) == SHARED_TOKEN]
    assert not held, "requests with the rate-limited token during Retry-After: " + ", ".join(
        f"actor {r.actor_id} at +{r.monotonic - at:.3f}s" for r in held
    )
    resumed = [r for r in records if _bearer(r) == SHARED_TOKEN and r.monotonic >= at + RETRY_AFTER]
    assert {r.actor_id for r in resumed} == {first, second}, "the shared token never resumed"
    # The other token's actor keeps the pace it had before the 429.
    other_before = [
        r for r in records if _bearer(r) == OTHER_TOKEN and at - BASELINE <= r.monotonic < at
    ]
    other_during = [r for r in during if _bearer(r) == OTHER_TOKEN]
    pace_before = len(other_before) / BASELINE
    pace_during = len(other_during) / RETRY_AFTER
    assert pace_before > 0, f"actor {third} was not polled before the 429"
    assert pace_during >= 0.9 * pace_before, (
        f"actor {third} (its own token) slowed from {pace_before:.1f} to "
        f"{pace_during:.1f} requests/s while another token was held"
    )


def test_a_held_token_defers_the_healthy_actor_instead_of_failing_it(
    token_fleet: Fleet, clock: VirtualClock
) -> None:
    """One token, two actors; every request for one of them answers 429 with
    Retry-After 2. The other actor's polls wait for each hold to end and then go
    out: it is up at every scrape, never logged down, and no error is counted for
    it, while the 429 actor is down for its own answers and deferrals are counted."""
    limited, healthy, _ = token_fleet.actor_ids()
    simulator = SimulatorServer(token_fleet, tokens=SHARED_TOKEN)
    document = simulator_config(
        VENDOR_URL,
        [_actor(token_fleet, limited), _actor(token_fleet, healthy)],
        token=SHARED_TOKEN,
        interval="500ms",
        stale_after="30s",
        retry_backoff_max="1s",  # Retry-After 2 s is longer: the poll ends, the token is held
    )
    with virtual_daemon(document, simulator, clock) as daemon:
        clock.run_until(daemon.ready, 20.0, what="every target polled once")
        log_start = len(daemon.logs)
        simulator.add_fault(
            Fault(FaultKind.STATUS, status=429, retry_after=f"{RETRY_AFTER:g}", actor_id=limited)
        )
        ups: list[float] = []
        deadline = clock.monotonic() + 10 * RETRY_AFTER
        while clock.monotonic() < deadline:
            series = daemon.series()
            ups.extend(select(series, "nayax_ev_target_up", actor_id=str(healthy)).values())
            clock.sleep(0.2)
        healthy_polls = [
            r for r in daemon.vendor.requests() if r.actor_id == healthy and r.status == 200
        ]
        logs = daemon.logs[log_start:]

    assert len(ups) >= 40 and set(ups) == {1.0}, (
        f"healthy actor's target_up seen: {sorted(set(ups))}"
    )
    downs = [e for e in logs if e.get("event") == "target down"]
    assert downs and all(e["actor_id"] == limited for e in downs), downs
    assert {e["reason"] for e in downs} == {"rate_limited"}
    errors = {
        (dict(labels)["actor_id"], dict(labels)["reason"]): value
        for (name, labels), value in series.items()
        if name == "nayax_ev_poll_errors_total" and value
    }
    assert set(errors) == {(str(limited), "rate_limited")}, errors
    assert set(select(series, "nayax_ev_target_up", actor_id=str(limited)).values()) == {0.0}
    deferred = select(series, "nayax_ev_polls_deferred_total", reason="rate_limited")
    assert next(iter(deferred.values())) > 0
    # The deferred polls did go out: the healthy actor kept being polled.
    assert len({r.machine for r in healthy_polls}) == 1 + len(token_fleet.machines(healthy))


def test_over_budget_rounds_are_measured_and_every_target_polled_fairly(
    budget_simulator: SimulatorServer, budget_fleet: Fleet, clock: VirtualClock
) -> None:
    """15 targets at 5 requests/s cannot be polled every second: the round-duration
    metric shows the effective round of 3 s, and each target is polled once per
    effective round."""
    actor_id = budget_fleet.actor_ids()[0]
    targets = 1 + len(budget_fleet.machines(actor_id))
    effective = targets / RATE
    document = simulator_config(
        VENDOR_URL,
        [_actor(budget_fleet, actor_id)],
        interval="1s",
        stale_after="30s",
        rate_limit_per_second=RATE,
        max_concurrency=4,
    )
    with virtual_daemon(document, budget_simulator, clock) as daemon:
        clock.run_until(daemon.ready, 20.0, what="every target polled once")
        daemon.vendor.clear_requests()
        rounds: list[float] = []

        def two_rounds_measured() -> bool:
            found = select(daemon.series(), "nayax_ev_poll_round_duration_seconds")
            value = next(iter(found.values()), None)
            if value is not None and (not rounds or rounds[-1] != value):
                rounds.append(value)
            return len(rounds) >= 2

        clock.run_until(two_rounds_measured, 6 * effective, step=0.2, what="two rounds")
        clock.sleep(2 * effective)
        records = daemon.vendor.requests()
        series = daemon.series()

    assert all(0.9 * effective <= r <= 1.2 * effective for r in rounds), rounds
    assert select(series, "nayax_ev_poll_interval_seconds") == {
        ("nayax_ev_poll_interval_seconds", frozenset({("kind", "ev_dashboard")})): 1.0
    }
    per_target = Counter(r.machine for r in records)
    assert len(per_target) == targets, per_target
    assert max(per_target.values()) - min(per_target.values()) <= 1, per_target


def test_rounds_are_measured_per_kind_against_their_own_interval(
    budget_simulator: SimulatorServer, budget_fleet: Fleet, clock: VirtualClock
) -> None:
    """Machine status is polled less often than evDashboard: each kind's round is
    its own, so a healthy fleet's evDashboard round stays near poll.interval."""
    actor_id = budget_fleet.actor_ids()[0]
    document = simulator_config(
        VENDOR_URL,
        [_actor(budget_fleet, actor_id)],
        interval="1s",
        stale_after="30s",
        machine_status={"enabled": True, "interval": "3s"},
    )
    with virtual_daemon(document, budget_simulator, clock) as daemon:
        clock.run_until(daemon.ready, 20.0, what="every target polled once")

        def rounds() -> dict[str, float]:
            found = select(daemon.series(), "nayax_ev_poll_round_duration_seconds")
            return {dict(labels)["kind"]: value for (_, labels), value in found.items()}

        clock.run_until(lambda: len(rounds()) == 2, 15.0, step=0.2, what="both kinds' rounds")
        clock.sleep(3.5)  # a full round of each after the first
        measured = rounds()
        intervals = {
            dict(labels)["kind"]: value
            for (_, labels), value in select(
                daemon.series(), "nayax_ev_poll_interval_seconds"
            ).items()
        }
    assert intervals == {"ev_dashboard": 1.0, "machine_status": 3.0}
    assert 0.9 <= measured["ev_dashboard"] <= 1.1, measured
    assert 2.7 <= measured["machine_status"] <= 3.3, measured


def test_a_target_deferred_past_stale_after_goes_stale_but_not_down(
    token_fleet: Fleet, clock: VirtualClock
) -> None:
    """Deferred longer than poll.stale_after (Retry-After 4 s, stale after 2 s),
    the healthy actor's figures vanish as any kept reading's do, and come back
    once its deferred poll went out; it is never reported down meanwhile."""
    limited, healthy, _ = token_fleet.actor_ids()
    simulator = SimulatorServer(token_fleet, tokens=SHARED_TOKEN)
    document = simulator_config(
        VENDOR_URL,
        [_actor(token_fleet, limited), _actor(token_fleet, healthy)],
        token=SHARED_TOKEN,
        interval="500ms",
        stale_after="2s",
        retry_backoff_max="1s",
    )
    with virtual_daemon(document, simulator, clock) as daemon:
        clock.run_until(daemon.ready, 20.0, what="every target polled once")
        simulator.add_fault(Fault(FaultKind.STATUS, status=429, retry_after="4", actor_id=limited))
        seen: list[tuple[set[float], bool]] = []
        deadline = clock.monotonic() + 12.0
        while clock.monotonic() < deadline:
            series = daemon.series()
            up = set(select(series, "nayax_ev_target_up", actor_id=str(healthy)).values())
            figures = bool(select(series, "nayax_ev_operator_machines", actor_id=str(healthy)))
            seen.append((up, figures))
            clock.sleep(0.2)

    assert all(up == {1.0} for up, _ in seen), [up for up, _ in seen]
    shown = [figures for _, figures in seen]
    assert not all(shown), "the healthy actor's figures never went stale while deferred"
    gone = shown.index(False)
    assert any(shown[gone:]), "the figures did not come back after the deferred poll"


def test_the_process_tells_an_over_budget_config_and_warns_once(
    budget_fleet: Fleet, tmp_path: Path
) -> None:
    """15 targets at 50 requests/s cannot be polled every 100 ms: --config.check
    says so (exit 0) with the effective round of 0.3 s, and the running exporter
    warns once, not once a round."""
    actor_id = budget_fleet.actor_ids()[0]
    with SimulatorServer(budget_fleet, tokens="sim-token") as simulator:
        document = simulator_config(
            simulator.url,
            [_actor(budget_fleet, actor_id)],
            interval="100ms",
            stale_after="30s",
            rate_limit_per_second=50,
        )
        config = write_config(tmp_path / "config.yaml", document)
        check = config_check(f"--config.file={config}", timeout=60)
        assert check.returncode == 0, check.stderr
        assert "effective round 0.3s" in check.stdout, check.stdout
        assert "warning: lynx.rate_limit_per_second 50 cannot carry" in check.stdout, check.stdout

        with running_exporter(config) as exporter:
            rounds: set[float] = set()

            def rounds_measured() -> bool:
                found = select(exporter.series(), "nayax_ev_poll_round_duration_seconds")
                rounds.update(found.values())
                return len(rounds) >= 3

            wait_for(rounds_measured, timeout=20, interval=0.05, what="three rounds")
            logs = [json.loads(line) for line in exporter.log_lines if line.strip()]

    warned = [e for e in logs if e.get("event") == "polling over budget"]
    assert len(warned) == 1 and warned[0]["round"] == pytest.approx(0.3), warned
