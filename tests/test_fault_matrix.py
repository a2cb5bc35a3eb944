"""The fault matrix: every fault the Lynx API or the network can throw, one row each.

One exporter child process polls an in-test simulator for the whole module, over
real HTTP: two actors with their own tokens, each an actor-wide and a machine
target. Each row scopes one fault to the *affected* actor (the other actor is the
unaffected control), holds it for several polls, clears it and waits for recovery;
every row then proves, from the outside only (``/metrics``, the JSON log lines and
the simulator's request log):

- the process stays up and ``/metrics`` answers 200 within 1 s throughout;
- the affected targets are down (or, for benign payload quirks, stay up) with the
  right ``nayax_ev_poll_errors_total`` reason, and publish exactly the values the
  simulator's unfaulted answer implies (kept, converted, or absent);
- the control actor keeps updating and never counts an error;
- retries are bounded per poll (the exporter's ``X-Request-Attempt`` header names the
  poll), absent for 4xx, and no request goes out while a ``Retry-After`` runs;
- exactly one log line per change of a target's state, and no traceback.

Unreachable upstreams (connection refused, unresolvable host) need their own
``lynx.base_url``, so they run as separate exporter processes at the end.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import math
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
import structlog
from structlog.typing import FilteringBoundLogger

from exporter.config import parse_config
from exporter.kinds.ev_dashboard import MachineFigures, OperatorStatus, Reading
from exporter.lynx.client import ATTEMPT_HEADER
from exporter.metrics.stats import Stats
from exporter.polling.poller import Poller
from exporter.polling.store import PollOutcome, SnapshotStore
from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, RecordedRequest, SimulatorServer
from exporter.simulator.server import ATTEMPT_HEADER as SIMULATOR_ATTEMPT_HEADER
from exporter.targets import build_targets
from tests.harness import (
    ExporterProcess,
    SeriesKey,
    parse_exposition,
    running_exporter,
    select,
    simulator_config,
    wait_for,
    write_config,
)

INTERVAL = 0.5
TIMEOUT = 1.0
MAX_RETRIES = 2
ATTEMPTS = MAX_RETRIES + 1
BACKOFF_MAX = 1.0
WINDOW = "24h"
SCRAPE_BUDGET = 1.0  # /metrics must answer within this, every time
# A request may already be on the wire when a 429 for the same token comes back;
# only requests arriving later than this after the 429 count as ignoring it.
IN_FLIGHT_GRACE = 0.05

TOKEN_AFFECTED = "TKN-5ecret-Zz9-affected"
TOKEN_CONTROL = "TKN-5ecret-Zz9-control"

OPERATOR_FIELDS = ("machines", "communicating_machines", "active_machines", "silent_machines")
FIGURE_FIELDS = (
    "charging_sessions",
    "transactions",
    "sales_amount",
    "charging_duration_seconds",
    "energy_joules",
)
JOULES_PER_KWH = 3.6e6

Down = Literal["all", "operator", "none"]
ValueRule = Callable[[str, float], float | None]


def same(_field: str, value: float) -> float | None:
    return value


def absent(_field: str, _value: float) -> float | None:
    return None


def negated(field_name: str, value: float) -> float | None:
    # The simulator negates every number (0 becomes -1); only sales may be negative.
    if field_name != "sales_amount":
        return None
    return -value if value != 0 else -1.0


def huge(field_name: str, _value: float) -> float | None:
    # 1e308 is a finite float64 but far beyond any figure a fleet has (upstream.MAX_FIGURE,
    # 1e15): every such sample is dropped as bad_payload, never published.
    return None


def without_sessions_and_duration(field_name: str, value: float) -> float | None:
    return None if field_name in ("charging_sessions", "charging_duration_seconds") else value


def without_energy(field_name: str, value: float) -> float | None:
    return None if field_name == "energy_joules" else value


def without_operator(field_name: str, value: float) -> float | None:
    return None if field_name in OPERATOR_FIELDS else value


def without_figures(field_name: str, value: float) -> float | None:
    return None if field_name in FIGURE_FIELDS else value


@dataclass(frozen=True)
class Row:
    """One fault and what the exporter must make of it."""

    id: str
    fault: Fault  # actor_id is set to the affected actor at run time
    reason: str | None  # the poll-error reason that must move; None = benign
    attempts: int | None  # requests per complete faulted poll; None = only bounded
    values: ValueRule = same  # unfaulted value -> published value while faulty
    down: Down = "all"  # which of the affected actor's targets go down
    polls: int = 3  # polls per affected target to watch in the faulty state

    def __post_init__(self) -> None:
        assert (self.reason is None) == (self.down == "none"), self.id


ROWS: tuple[Row, ...] = (
    *(
        Row(f"http_{code}", Fault(FaultKind.STATUS, status=code), "server_error", ATTEMPTS)
        for code in (500, 502, 503, 504)
    ),
    # Retry-After beyond retry_backoff_max: the poll ends at once and the token is held.
    Row(
        "http_429_retry_after_seconds",
        Fault(FaultKind.STATUS, status=429, retry_after="2"),
        "rate_limited",
        1,
    ),
    # Retry-After within retry_backoff_max: waited out inside the poll, then retried.
    Row(
        "http_429_retry_after_seconds_within_backoff",
        Fault(FaultKind.STATUS, status=429, retry_after="1"),
        "rate_limited",
        ATTEMPTS,
        polls=2,
    ),
    Row(
        "http_429_retry_after_http_date",
        Fault(FaultKind.STATUS, status=429, retry_after_in=2.5),
        "rate_limited",
        1,
    ),
    Row("http_400", Fault(FaultKind.STATUS, status=400), "client_error", 1),
    Row("http_401", Fault(FaultKind.STATUS, status=401), "auth", 1),
    Row("http_403", Fault(FaultKind.STATUS, status=403), "auth", 1),
    Row("http_404", Fault(FaultKind.STATUS, status=404), "not_found", 1),
    # A poll of these takes ATTEMPTS timeouts, so fewer polls are watched.
    Row("hang_before_answer", Fault(FaultKind.HANG, seconds=3.0), "timeout", ATTEMPTS, polls=2),
    Row(
        "hang_mid_body",
        Fault(FaultKind.HANG, seconds=3.0, hang_at="body"),
        "timeout",
        ATTEMPTS,
        polls=2,
    ),
    # Every gap shorter than the timeout, the whole answer twice as long.
    Row(
        "trickled_body",
        Fault(FaultKind.HANG, seconds=0.3, hang_at="trickle"),
        "timeout",
        ATTEMPTS,
        polls=2,
    ),
    Row("reset_mid_body", Fault(FaultKind.RESET), "connection", ATTEMPTS),
    Row("truncated_json", Fault(FaultKind.TRUNCATED_JSON), "bad_payload", 1),
    Row("html_page_with_200", Fault(FaultKind.HTML_200), "bad_payload", 1),
    Row("json_array", Fault(FaultKind.JSON_ARRAY), "bad_payload", 1),
    # Only the actor-wide target publishes operator status, so only it misses it.
    Row(
        "missing_operator_dashboard",
        Fault(FaultKind.MISSING_OPERATOR),
        "bad_payload",
        1,
        without_operator,
        "operator",
    ),
    Row(
        "missing_machine_dashboard",
        Fault(FaultKind.MISSING_MACHINE),
        "bad_payload",
        1,
        without_figures,
    ),
    Row("nulls", Fault(FaultKind.NULLS), None, 1, absent, "none"),
    Row("numeric_strings", Fault(FaultKind.NUMERIC_STRINGS), None, 1, same, "none"),
    Row("negative_numbers", Fault(FaultKind.NEGATIVE), "bad_payload", 1, negated),
    Row("huge_1e308", Fault(FaultKind.HUGE), "bad_payload", 1, huge),
    Row("nan_and_infinity", Fault(FaultKind.NAN), "bad_payload", 1, absent),
    Row("unknown_unit", Fault(FaultKind.UNKNOWN_UNIT), "unknown_unit", 1, without_energy),
    Row("extra_unknown_fields", Fault(FaultKind.EXTRA_FIELDS), None, 1, same, "none"),
    # Numbers as text must be in JSON's own syntax: "1_0" is not 10, "٣" not 3.
    Row(
        "numeric_strings_not_json",
        Fault(
            FaultKind.PATCH,
            patch={
                "MachineDashboard": {
                    "NumberOfChargingSessions": "1_0",
                    "TotalChargingSessionsDuration": "\u0663",
                }
            },
        ),
        "bad_payload",
        1,
        without_sessions_and_duration,
    ),
    # Not a dashboard (a few hundred bytes): read no further than 1 MiB.
    Row(
        "oversized_body",
        Fault(FaultKind.EXTRA_FIELDS, pad_bytes=2 << 20),
        "bad_payload",
        1,
    ),
)


# --- the environment ---------------------------------------------------------------


@dataclass(frozen=True)
class TargetId:
    actor_id: int
    machine: str  # "" = actor-wide, else the machine id (also its label here)

    def __str__(self) -> str:
        return f"{self.actor_id}/{self.machine or '-'}"


def fleet_for_tests(actors: int = 2) -> Fleet:
    # A silence period far beyond the test keeps operator status constant, and a
    # rolling 24 h window keeps the figures constant: answers are predictable.
    return Fleet(FleetSpec(seed=11, actors=actors, machines_per_actor=2, silence_period_s=1e9))


def actor_entry(fleet: Fleet, actor_id: int, token: str, name: str) -> dict[str, Any]:
    machine = fleet.machines(actor_id)[0]
    return {"id": actor_id, "name": name, "token": token, "machines": [{"id": machine.id}]}


def matrix_config(base_url: str, actors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return simulator_config(
        base_url,
        actors,
        token=TOKEN_CONTROL,
        interval=f"{int(INTERVAL * 1000)}ms",
        stale_after="120s",  # staleness has its own test; here kept values must stay
        timeout=f"{int(TIMEOUT * 1000)}ms",
        max_retries=MAX_RETRIES,
        retry_backoff="50ms",
        retry_backoff_max=f"{int(BACKOFF_MAX * 1000)}ms",
    )


def expected_values(fleet: Fleet, target: TargetId) -> dict[str, float]:
    """What the exporter publishes for ``target`` from an unfaulted answer."""
    now = datetime.now(UTC)
    machine = (
        None
        if not target.machine
        else fleet.find_machine(target.actor_id, int(target.machine), None)
    )
    answer = fleet.dashboard(
        target.actor_id,
        start=now - timedelta(hours=24),
        end=now,
        machine=machine,
        time_period=None,
        now=now,
    )
    operator, figures = answer["OperatorDashboard"], answer["MachineDashboard"]
    assert isinstance(operator, dict) and isinstance(figures, dict)
    assert figures["UnitOfMeasureSymbol"] == "kWh"
    values: dict[str, float] = {
        "charging_sessions": float(figures["NumberOfChargingSessions"]),
        "transactions": float(figures["NumberOfTransactionsForTimeInterval"]),
        "sales_amount": float(figures["SalesAmountForTimeInterval"]),
        "charging_duration_seconds": float(figures["TotalChargingSessionsDuration"]),
        "energy_joules": float(figures["TotalEnergyConsumption"]) * JOULES_PER_KWH,
    }
    if not target.machine:
        values.update(
            machines=float(operator["TotalOperatorMachines"]),
            communicating_machines=float(operator["TotalCommunicatingMachines"]),
            active_machines=float(operator["TotalActiveMachines"]),
            silent_machines=float(operator["TotalSilentMachines"]),
        )
    return values


def one(series: Mapping[SeriesKey, float], name: str, **labels: str) -> float | None:
    found = select(series, name, **labels)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


def published(series: Mapping[SeriesKey, float], target: TargetId) -> dict[str, float | None]:
    actor = str(target.actor_id)
    if target.machine:
        return {
            f: one(series, f"nayax_ev_machine_{f}", actor_id=actor, machine_id=target.machine)
            for f in FIGURE_FIELDS
        }
    values = {
        f: one(series, f"nayax_ev_operator_{f}", actor_id=actor, window=WINDOW)
        for f in FIGURE_FIELDS
    }
    values.update(
        {f: one(series, f"nayax_ev_operator_{f}", actor_id=actor) for f in OPERATOR_FIELDS}
    )
    return values


def target_labels(target: TargetId) -> dict[str, str]:
    return {"actor_id": str(target.actor_id), "machine": target.machine, "window": WINDOW}


def target_up(series: Mapping[SeriesKey, float], target: TargetId) -> float | None:
    return one(series, "nayax_ev_target_up", **target_labels(target))


def last_success(series: Mapping[SeriesKey, float], target: TargetId) -> float | None:
    return one(series, "nayax_ev_target_last_success_timestamp_seconds", **target_labels(target))


def poll_errors(series: Mapping[SeriesKey, float]) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["actor_id"], dict(labels)["reason"]): value
        for (name, labels), value in series.items()
        if name == "nayax_ev_poll_errors_total"
    }


def counter_delta(
    before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    return {
        key: after.get(key, 0.0) - before.get(key, 0.0)
        for key in set(before) | set(after)
        if after.get(key, 0.0) != before.get(key, 0.0)
    }


def values_match(actual: Mapping[str, float | None], wanted: Mapping[str, float | None]) -> bool:
    for name, value in wanted.items():
        got = actual.get(name)
        if (got is None) != (value is None):
            return False
        if got is not None and value is not None and not math.isclose(got, value, rel_tol=1e-12):
            return False
    return True


def request_target(record: RecordedRequest) -> TargetId:
    assert record.actor_id is not None
    return TargetId(record.actor_id, record.machine or "")


@dataclass(frozen=True)
class Poll:
    target: TargetId
    requests: tuple[RecordedRequest, ...]


def polls_of(records: Sequence[RecordedRequest]) -> list[Poll]:
    """Requests grouped by the poll they belong to (the exporter's attempt header:
    ``<poll id> <attempt>/<allowed>``), in order of the poll's first request."""
    groups: dict[str, list[RecordedRequest]] = {}
    for record in sorted(records, key=lambda r: r.monotonic):
        assert record.attempt is not None, f"request without {ATTEMPT_HEADER}: {record}"
        poll_id, _, _ = record.attempt.partition(" ")
        groups.setdefault(poll_id, []).append(record)
    polls = []
    for group in groups.values():
        targets = {request_target(r) for r in group}
        assert len(targets) == 1, f"one poll id across targets: {group}"
        numbers = [r.attempt.split(" ")[1] for r in group if r.attempt is not None]
        # Attempts are numbered 1, 2, ... in arrival order, each "n/allowed".
        assert numbers == [f"{n}/{ATTEMPTS}" for n in range(1, len(group) + 1)], numbers
        polls.append(Poll(targets.pop(), tuple(group)))
    return polls


@dataclass
class Scrape:
    at: float  # monotonic, when the scrape was sent
    wall: float  # the same instant in wall-clock time
    seconds: float
    status: int | None
    error: str | None
    series: dict[SeriesKey, float] = field(default_factory=dict)


class Scraper:
    """Scrapes /metrics every ``period`` seconds in the background, recording each."""

    def __init__(self, exporter: ExporterProcess, period: float = 0.1) -> None:
        self._exporter = exporter
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.scrapes: list[Scrape] = []

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started, wall = time.monotonic(), time.time()
            try:
                response = session.get(f"{self._exporter.url}/metrics", timeout=SCRAPE_BUDGET)
                elapsed = time.monotonic() - started
                series = parse_exposition(response.text) if response.status_code == 200 else {}
                self.scrapes.append(
                    Scrape(started, wall, elapsed, response.status_code, None, series)
                )
            except requests.RequestException as exc:
                elapsed = time.monotonic() - started
                self.scrapes.append(Scrape(started, wall, elapsed, None, type(exc).__name__))
            self._stop.wait(self._period)
        session.close()

    def assert_always_answered(self) -> None:
        assert len(self.scrapes) >= 5, "the scraper barely ran"
        slow = [s for s in self.scrapes if s.status != 200 or s.seconds >= SCRAPE_BUDGET]
        assert not slow, f"/metrics failed or took >= {SCRAPE_BUDGET}s: {slow[:3]}"


def parsed_logs(lines: Sequence[str]) -> list[dict[str, Any]]:
    parsed = []
    for line in lines:
        if not line.strip():
            continue
        assert "Traceback" not in line, line
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        parsed.append(entry)
    return parsed


def log_target(entry: Mapping[str, Any]) -> TargetId:
    return TargetId(int(entry["actor_id"]), str(entry["machine"]))


def assert_clean_logs(entries: Sequence[Mapping[str, Any]]) -> None:
    """Upstream faults are warnings: no error-level lines, no exception dumps."""
    for entry in entries:
        assert "exception" not in entry and "exc_info" not in entry, entry
        assert entry.get("level") in ("debug", "info", "warn"), entry


def state_changes(entries: Sequence[Mapping[str, Any]], event: str) -> dict[TargetId, int]:
    counts: dict[TargetId, int] = defaultdict(int)
    for entry in entries:
        if entry.get("event") == event:
            counts[log_target(entry)] += 1
    return dict(counts)


@dataclass
class Env:
    simulator: SimulatorServer
    exporter: ExporterProcess
    affected: int
    control: int

    @property
    def fleet(self) -> Fleet:
        return self.simulator.fleet

    def targets(self, actor_id: int) -> list[TargetId]:
        return [
            TargetId(actor_id, ""),
            TargetId(actor_id, str(self.fleet.machines(actor_id)[0].id)),
        ]

    @property
    def all_targets(self) -> list[TargetId]:
        return self.targets(self.affected) + self.targets(self.control)

    def healthy(self, series: Mapping[SeriesKey, float]) -> bool:
        return all(
            target_up(series, t) == 1.0
            and values_match(published(series, t), expected_values(self.fleet, t))
            for t in self.all_targets
        )

    def wait_healthy(self, timeout: float) -> dict[SeriesKey, float]:
        latest: dict[SeriesKey, float] = {}

        def check() -> bool:
            nonlocal latest
            latest = self.exporter.series()
            return self.healthy(latest)

        wait_for(check, timeout=timeout, interval=0.1, what="every target up with true values")
        return latest


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    fleet = fleet_for_tests()
    affected, control = fleet.actor_ids()
    simulator = SimulatorServer(fleet, tokens={affected: TOKEN_AFFECTED, control: TOKEN_CONTROL})
    simulator.start()
    try:
        config = matrix_config(
            simulator.url,
            [
                actor_entry(fleet, affected, TOKEN_AFFECTED, "Affected"),
                actor_entry(fleet, control, TOKEN_CONTROL, "Control"),
            ],
        )
        path = write_config(tmp_path_factory.mktemp("matrix") / "config.yaml", config)
        with running_exporter(path) as exporter:
            environment = Env(simulator, exporter, affected, control)
            environment.wait_healthy(timeout=15)
            yield environment
    finally:
        simulator.stop()


# --- the rows -----------------------------------------------------------------------


def affected_down(env: Env, row: Row) -> list[TargetId]:
    targets = env.targets(env.affected)
    if row.down == "all":
        return targets
    if row.down == "operator":
        return [t for t in targets if not t.machine]
    return []


def first_faulted_arrival(records: Sequence[RecordedRequest], target: TargetId) -> float | None:
    walls = [r.wall for r in records if r.fault is not None and request_target(r) == target]
    return min(walls) if walls else None


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_fault_row(env: Env, row: Row) -> None:
    simulator, exporter = env.simulator, env.exporter
    down = affected_down(env, row)
    affected = env.targets(env.affected)
    healthy = [t for t in env.all_targets if t not in down]
    before = env.wait_healthy(timeout=15)  # the previous row has fully recovered
    unfaulted = {t: expected_values(env.fleet, t) for t in env.all_targets}
    simulator.clear_requests()
    log_start = len(exporter.log_lines)
    errors_before = poll_errors(before)

    with Scraper(exporter) as scraper:
        simulator.add_fault(replace(row.fault, actor_id=env.affected))

        # 1. The fault shows: down targets are down; benign ones publish a faulted poll.
        def fault_visible() -> bool:
            series = exporter.series()
            records = simulator.requests()
            for target in affected:
                if target in down:
                    if target_up(series, target) != 0.0:
                        return False
                    continue
                first = first_faulted_arrival(records, target)
                seen = last_success(series, target)
                if first is None or seen is None or seen <= first:
                    return False
            return True

        wait_for(fault_visible, timeout=15, interval=0.1, what=f"{row.id} visible in /metrics")

        # 2. Several more polls in the faulty state.
        def polls_done() -> bool:
            if row.reason is not None:
                delta = counter_delta(errors_before, poll_errors(exporter.series()))
                return delta.get((str(env.affected), row.reason), 0) >= row.polls * len(down)
            faulted = [r for r in simulator.requests() if r.fault is not None]
            return all(
                len({p.requests[0].attempt for p in polls_of(faulted) if p.target == t})
                >= row.polls
                for t in affected
            )

        wait_for(polls_done, timeout=30, interval=0.1, what=f"{row.polls} faulty polls")
        during = exporter.series()
        # A rolling window's figures move with the clock (a session enters it): the
        # poll behind ``during`` answered at some instant between the two reads.
        unfaulted_after = {t: expected_values(env.fleet, t) for t in env.all_targets}
        records = simulator.requests()

        # 3. Recovery: every target up again, with the unfaulted values.
        simulator.clear_faults()
        env.wait_healthy(timeout=20)

        def recovery_logged() -> bool:
            ups = state_changes(parsed_logs(exporter.log_lines[log_start:]), "target up")
            return all(ups.get(target, 0) >= 1 for target in down)

        wait_for(recovery_logged, timeout=3, what="the recovery log lines")
    assert exporter.process is not None and exporter.process.poll() is None, "exporter died"
    scraper.assert_always_answered()

    # --- target state and values while faulty -------------------------------------
    for target in env.all_targets:
        wanted_up = 0.0 if target in down else 1.0
        assert target_up(during, target) == wanted_up, target
        rule = row.values if target in affected else same
        wanted = [
            {name: rule(name, value) for name, value in figures[target].items()}
            for figures in (unfaulted, unfaulted_after)
        ]
        assert any(values_match(published(during, target), w) for w in wanted), (
            target,
            published(during, target),
            wanted,
        )
    if row.down == "none":  # benign: never down, not even for one scrape
        for scrape in scraper.scrapes:
            if scrape.series:
                assert all(target_up(scrape.series, t) == 1.0 for t in env.all_targets)
    for target in env.targets(env.control):  # the control kept updating
        assert (last_success(during, target) or 0) > (last_success(before, target) or 0)

    # --- error counters: exactly the expected reason, for the affected actor only --
    delta = counter_delta(errors_before, poll_errors(during))
    if row.reason is None:
        assert delta == {}
    else:
        assert set(delta) == {(str(env.affected), row.reason)}, delta
        assert delta[(str(env.affected), row.reason)] >= row.polls * len(down)

    # --- retries, from the simulator's request log ---------------------------------
    polls = polls_of(records)
    assert polls, "no requests recorded"
    for poll in polls:
        assert len(poll.requests) <= ATTEMPTS, poll
        if poll.target not in affected:
            assert len(poll.requests) == 1 and poll.requests[0].fault is None, poll
    faulted = [p for p in polls if all(r.fault is not None for r in p.requests)]
    assert faulted
    last_per_target = {p.target: p for p in faulted}
    for poll in faulted:
        complete = poll is not last_per_target[poll.target]  # the last may be cut short
        if row.attempts == 1 or (complete and row.attempts is not None):
            assert len(poll.requests) == row.attempts, (row.id, poll)
    if row.fault.kind is FaultKind.STATUS and row.fault.status in (400, 401, 403, 404):
        assert all(len(p.requests) == 1 for p in polls)  # never retried
    if row.fault.kind is FaultKind.STATUS and row.fault.status == 429:
        assert any(r.status == 429 and r.retry_after for r in records)  # checked below
    assert_retry_after_respected(records, f"Bearer {TOKEN_AFFECTED}")

    # --- logs: one line per change of state, nothing alarming ----------------------
    entries = parsed_logs(exporter.log_lines[log_start:])
    assert_clean_logs(entries)
    downs = state_changes(entries, "target down")
    ups = state_changes([e for e in entries if e.get("level") == "info"], "target up")
    changes = [
        (e.get("ts"), e.get("level"), e.get("event"), e.get("machine"), e.get("reason"))
        for e in entries
        if e.get("event") in ("target up", "target down")
    ]
    assert downs == dict.fromkeys(down, 1), changes
    assert ups == dict.fromkeys(down, 1), changes
    for entry in entries:
        if entry.get("event") == "target down":
            assert entry["level"] == "warn" and entry["reason"] == row.reason, entry
    for target in healthy:
        assert target not in downs


def assert_retry_after_respected(records: Sequence[RecordedRequest], authorization: str) -> None:
    """After a 429, no request carrying the same token arrives before its
    Retry-After has elapsed (delta-seconds or HTTP-date)."""
    same_token = sorted(
        (r for r in records if r.authorization == authorization), key=lambda r: r.monotonic
    )
    for answer in same_token:
        if answer.status != 429 or answer.retry_after is None:
            continue
        value = answer.retry_after.strip()
        if value.isdigit():
            not_before_mono = answer.monotonic + float(value)
            early = [
                r
                for r in same_token
                if answer.monotonic + IN_FLIGHT_GRACE < r.monotonic < not_before_mono
            ]
        else:
            not_before_wall = email.utils.parsedate_to_datetime(value).timestamp()
            early = [
                r for r in same_token if answer.wall + IN_FLIGHT_GRACE < r.wall < not_before_wall
            ]
        assert not early, f"sent during Retry-After {value!r} of the 429 at {answer}: {early}"


def test_rows_cover_every_fault_kind() -> None:
    # A new simulator fault kind needs a row here.
    assert {row.fault.kind for row in ROWS} == set(FaultKind)


def test_the_attempt_header_is_what_the_simulator_records() -> None:
    assert ATTEMPT_HEADER == SIMULATOR_ATTEMPT_HEADER


# --- unreachable upstreams: a base_url of their own ---------------------------------


@contextmanager
def unreachable_base_url(kind: str) -> Iterator[str]:
    if kind == "unresolvable_host":
        yield "http://nonexistent.invalid"  # RFC 2606: never resolves
        return
    # A port that is bound but not listening refuses connections, and stays ours
    # (a merely "free" port could be taken by another process meanwhile).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{closed.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["connection_refused", "unresolvable_host"])
def test_unreachable_upstream(tmp_path: Path, kind: str) -> None:
    with unreachable_base_url(kind) as base_url:
        run_unreachable(tmp_path, base_url)


def run_unreachable(tmp_path: Path, base_url: str) -> None:
    fleet = fleet_for_tests()
    first, second = fleet.actor_ids()
    config = matrix_config(
        base_url,
        [
            actor_entry(fleet, first, TOKEN_AFFECTED, "First"),
            actor_entry(fleet, second, TOKEN_CONTROL, "Second"),
        ],
    )
    path = write_config(tmp_path / "config.yaml", config)
    targets = [
        TargetId(actor_id, machine)
        for actor_id in (first, second)
        for machine in ("", str(fleet.machines(actor_id)[0].id))
    ]
    with running_exporter(path) as exporter, Scraper(exporter) as scraper:

        def several_failed_polls() -> bool:
            errors = poll_errors(exporter.series())
            return all(errors.get((str(a), "connection"), 0) >= 3 * 2 for a in (first, second))

        wait_for(several_failed_polls, timeout=20, interval=0.1, what="failed polls")
        wait_for(
            lambda: all(target_up(exporter.series(), t) == 0.0 for t in targets),
            timeout=5,
            what="targets down",
        )
        series = exporter.series()
        assert exporter.process is not None and exporter.process.poll() is None

    scraper.assert_always_answered()
    errors = {key: count for key, count in poll_errors(series).items() if count}
    assert {reason for (_, reason) in errors} == {"connection"}
    assert all(last_success(series, t) is None for t in targets)  # never had data
    # Bounded retries, seen from the exporter's own books: every failed poll cost
    # exactly `attempts` requests, give or take the polls still in flight.
    failed_polls = sum(errors.values())
    sent = one(series, "nayax_ev_api_requests_total", code="connection") or 0
    assert failed_polls * ATTEMPTS <= sent <= (failed_polls + len(targets)) * ATTEMPTS
    assert one(series, "nayax_ev_api_requests_total", code="200") is None

    entries = parsed_logs(exporter.log_lines)
    assert_clean_logs(entries)
    assert state_changes(entries, "target down") == dict.fromkeys(targets, 1)
    for entry in entries:
        if entry.get("event") == "target down":
            assert entry["reason"] == "connection", entry


def test_a_held_token_does_not_park_the_workers(tmp_path: Path) -> None:
    """A long Retry-After holds the affected actor's token; its other polls are
    deferred — they leave the worker at once instead of occupying it until the
    hold ends, or (here with a single worker) the control actor would not be
    polled for the whole hold — and are counted as deferred, not as failed."""
    fleet = fleet_for_tests()
    affected, control = fleet.actor_ids()
    config = matrix_config(
        "http://placeholder",
        [
            actor_entry(fleet, affected, TOKEN_AFFECTED, "Affected"),
            actor_entry(fleet, control, TOKEN_CONTROL, "Control"),
        ],
    )
    config["lynx"]["max_concurrency"] = 1
    retry_after = 4.0
    with SimulatorServer(
        fleet, tokens={affected: TOKEN_AFFECTED, control: TOKEN_CONTROL}
    ) as simulator:
        config["lynx"]["base_url"] = simulator.url
        path = write_config(tmp_path / "config.yaml", config)
        simulator.add_fault(
            Fault(FaultKind.STATUS, status=429, retry_after=f"{retry_after:g}", actor_id=affected)
        )
        with running_exporter(path) as exporter:
            wait_for(
                lambda: sum(r.status == 429 for r in simulator.requests()) >= 2,
                timeout=3 * retry_after,
                what="two holds",
            )
            records = simulator.requests()
            series = exporter.series()
            assert exporter.process is not None and exporter.process.poll() is None
    assert (one(series, "nayax_ev_polls_deferred_total", reason="rate_limited") or 0) > 0
    control_arrivals = sorted(r.monotonic for r in records if r.actor_id == control)
    first_429 = min(r.monotonic for r in records if r.status == 429)
    gaps = [
        later - earlier
        for earlier, later in itertools.pairwise(control_arrivals)
        if later > first_429
    ]
    assert len(gaps) >= 4, control_arrivals
    # Two control targets, one poll each per interval: a request every INTERVAL / 2.
    # Had the held target's polls waited in the worker, the gaps would be about the
    # whole Retry-After.
    assert max(gaps) < 2 * INTERVAL < retry_after, gaps


def test_two_polls_of_one_target_in_one_commit_batch_log_each_change_once() -> None:
    """The scheduler commits outcomes that finish within 50 ms as one batch, and a
    quick poll can follow a slow one of the same target that closely (it flaked the
    429 rows above under load). Each change must still be logged once, in order:
    the store's swap returns one transition per outcome, in batch order."""
    config = parse_config("lynx: {token: t}\nactors: [{id: 7}]\n", environ={})
    (target,) = build_targets(config)
    store = SnapshotStore([target], stale_after=60.0)

    reading = Reading(OperatorStatus(), MachineFigures(), energy_unit=None, time_period=None)

    def ok(at: float) -> PollOutcome:
        return PollOutcome(key=target.key, finished_at=at, reading=reading, status=200)

    def failed(at: float) -> PollOutcome:
        return PollOutcome(
            key=target.key, finished_at=at, reading=None, error_reason="rate_limited"
        )

    # A logger of its own, not structlog's global configuration: a test that ran the
    # command line in this process before may have left it filtering at another level.
    capture = structlog.testing.LogCapture()
    logger: FilteringBoundLogger = structlog.wrap_logger(
        None, processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    stop = threading.Event()
    poller = Poller(store, Stats(started_at=0.0), logger, stop=stop)
    poller.commit([ok(1.0)])
    poller.commit([failed(2.0), ok(2.1)])  # down and back up within one batch
    poller.commit([ok(3.0), failed(3.1)])  # still up, then down
    captured = capture.entries
    changes = [(e["event"], e["log_level"]) for e in captured if e["event"].startswith("target")]
    assert changes == [
        ("target up", "debug"),  # the first poll: not a recovery
        ("target down", "warning"),
        ("target up", "info"),
        ("target down", "warning"),
    ]
    state = store.current().states[target.key]
    assert (state.up, state.last_error_reason, state.last_success) == (False, "rate_limited", 3.0)
