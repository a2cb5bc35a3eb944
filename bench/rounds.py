"""Poll rounds, read from the simulator's request log.

Two measures (``docs/performance.md``, "Which round measure is right"):

- the **first round**, from process start until every target of every kind
  (evDashboard and, when on, machine status) has arrived once: start-up
  included, as issue 22's target and the outside review count it;
- the **steady round**: after clearing the log, the time until every
  evDashboard target has arrived once, with the exporter long past start-up.

Arrival stamps are ``CLOCK_MONOTONIC`` in the simulator's process, the clock
the bench reads too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.procs import WINDOWS, BenchError, ExporterProcess, SimulatorProcess, machine_busy_seconds

# (actor id, machine, window span s): a status request has no actor id in its path
# and no window, so (None, machine id, -1).
RequestKey = tuple[int | None, str | None, int]
NO_SPAN = -1  # a request without StartDate/EndDate (machine status)


def _span(query: Mapping[str, str]) -> int:
    try:
        start = datetime.fromisoformat(query["StartDate"])
        end = datetime.fromisoformat(query["EndDate"])
    except (KeyError, ValueError):
        return NO_SPAN
    return round((end - start).total_seconds())


def request_key(record: Mapping[str, Any]) -> RequestKey:
    return (record.get("actor_id"), record.get("machine"), _span(record.get("query") or {}))


def is_status(record: Mapping[str, Any]) -> bool:
    """A machine status request: a machine in the path, no actor. Pure."""
    return record.get("actor_id") is None and record.get("machine") is not None


def dashboard_keys(config: Mapping[str, Any]) -> set[RequestKey]:
    """The evDashboard requests of one round: per window, each actor and machine."""
    spans = [seconds for _, seconds in WINDOWS][: len(config["windows"])]
    keys: set[RequestKey] = set()
    for actor in config["actors"]:
        for span in spans:
            keys.add((actor["id"], None, span))
            keys.update((actor["id"], str(m["id"]), span) for m in actor["machines"])
    return keys


def status_keys(config: Mapping[str, Any]) -> set[RequestKey]:
    """The machine status requests of one round (none when the config turns status off)."""
    if config.get("machine_status", {}).get("enabled") is False:
        return set()
    return {(None, str(m["id"]), NO_SPAN) for actor in config["actors"] for m in actor["machines"]}


def first_arrivals(
    records: Iterable[Mapping[str, Any]], keys: set[RequestKey]
) -> dict[RequestKey, float]:
    """Each key's first arrival (monotonic) in ``records``. Pure."""
    first: dict[RequestKey, float] = {}
    for record in records:
        key = request_key(record)
        if key in keys and key not in first:
            first[key] = float(record["monotonic"])
    return first


@dataclass(frozen=True)
class FirstRound:
    """Process start → every target of every kind arrived once (start-up included)."""

    targets: int  # of every kind
    ideal_seconds: float  # targets x latency / concurrency (or the rate limit's bound)
    first_request_seconds: float  # process start → the first API request arrived
    seconds: float  # process start → the last target's first request arrived
    ratio: float  # seconds / ideal
    ready_seconds: float  # process start → /-/ready answered 200 (the last outcome committed)
    requests: int  # arrivals up to the end
    # Exporter CPU up to the first request (interpreter, imports, config, plan), and
    # from there to the end; interpolated between samples 0.1 s apart.
    startup_cpu_seconds: float
    exporter_cpu_seconds: float


def measure_first_round(
    simulator: SimulatorProcess,
    exporter: ExporterProcess,
    keys: set[RequestKey],
    ideal: float,
    timeout: float,
) -> FirstRound:
    """Wait for ``/-/ready`` (every target polled once), sampling the exporter's CPU,
    then read the first arrivals from the simulator's log (not cleared since it
    started, before the exporter did)."""
    samples = _ready_cpu_samples(exporter, timeout)
    records = simulator.requests()
    first = first_arrivals(records, keys)
    if len(first) < len(keys):
        raise BenchError(f"ready, but {len(keys) - len(first)} of {len(keys)} targets not logged")
    api = [float(r["monotonic"]) for r in records if request_key(r)[:2] != (None, None)]
    first_request, end = min(api), max(first.values())
    startup_cpu = interpolate(samples, first_request)
    return FirstRound(
        targets=len(keys),
        ideal_seconds=ideal,
        first_request_seconds=first_request - exporter.started,
        seconds=end - exporter.started,
        ratio=(end - exporter.started) / ideal,
        ready_seconds=samples[-1][0] - exporter.started,
        requests=sum(1 for r in records if float(r["monotonic"]) <= end),
        startup_cpu_seconds=startup_cpu,
        exporter_cpu_seconds=interpolate(samples, end) - startup_cpu,
    )


def _ready_cpu_samples(exporter: ExporterProcess, timeout: float) -> list[tuple[float, float]]:
    """(monotonic, exporter CPU s) every 0.1 s from process start until ``/-/ready``
    answers 200; the last sample is taken then."""
    samples = [(exporter.started, 0.0)]
    deadline = exporter.started + timeout
    while True:
        exporter.check_alive()
        samples.append((time.monotonic(), exporter.cpu_seconds()))
        if exporter.status("/-/ready") == 200:
            samples.append((time.monotonic(), exporter.cpu_seconds()))
            return samples
        if time.monotonic() > deadline:
            raise BenchError(f"exporter not ready within {timeout:.0f}s:\n{exporter.log_tail()}")
        time.sleep(0.1)


def interpolate(samples: Sequence[tuple[float, float]], moment: float) -> float:
    """The value at ``moment``, linear between the samples around it. Pure."""
    before = samples[0]
    for after in samples[1:]:
        if after[0] >= moment:
            if after[0] == before[0]:
                return after[1]
            share = (moment - before[0]) / (after[0] - before[0])
            return before[1] + max(0.0, share) * (after[1] - before[1])
        before = after
    return before[1]


@dataclass(frozen=True)
class RoundResult:
    seconds: float  # clear → every evDashboard target arrived once
    requests: int  # arrivals during that span, every kind
    status_requests: int  # of which machine status (their interval is 5 m: normally 0)
    non_200: int
    exporter_cpu_seconds: float  # over the round
    simulator_cpu_seconds: float
    # Everything else busy on the machine meanwhile (the bench itself, other
    # users): a loud neighbour makes the other figures pessimistic.
    other_cpu_seconds: float


def measure_round(
    simulator: SimulatorProcess,
    exporter: ExporterProcess,
    keys: set[RequestKey],
    ideal: float,
) -> RoundResult:
    """One steady round: clear the log, then wait until every key has arrived."""
    started = time.monotonic()
    exporter_cpu, simulator_cpu = exporter.cpu_seconds(), simulator.cpu_seconds()
    machine_cpu = machine_busy_seconds()
    simulator.clear_requests()
    # Fetching the log costs the simulator CPU: look first when a round should
    # be nearly over, then in small steps.
    time.sleep(max(0.5, 1.1 * ideal))
    deadline = started + max(30.0, 6 * ideal)
    while True:
        exporter.check_alive()
        now = time.monotonic()
        records = simulator.requests()
        first = first_arrivals(records, keys)
        if len(first) == len(keys):
            end = max(first.values())
            within = [r for r in records if float(r["monotonic"]) <= end]
            # CPU over the span up to this fetch, scaled to the round.
            scale = (end - started) / (now - started)
            exporter_used = exporter.cpu_seconds() - exporter_cpu
            simulator_used = simulator.cpu_seconds() - simulator_cpu
            machine_used = machine_busy_seconds() - machine_cpu
            return RoundResult(
                seconds=end - started,
                requests=len(within),
                status_requests=sum(1 for r in within if is_status(r)),
                non_200=sum(1 for r in within if r["status"] not in (0, 200)),
                exporter_cpu_seconds=exporter_used * scale,
                simulator_cpu_seconds=simulator_used * scale,
                other_cpu_seconds=max(0.0, machine_used - exporter_used - simulator_used) * scale,
            )
        if now > deadline:
            missing = len(keys) - len(first)
            raise TimeoutError(
                f"{missing} of {len(keys)} targets not polled within {now - started:.0f}s"
            )
        time.sleep(max(0.25, 0.1 * ideal))
