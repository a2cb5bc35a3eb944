"""``python -m bench.run`` (or ``python bench/run.py``): the scale benchmark.

Runs the simulator and the exporter as separate processes at each fleet size,
with the default config (machine status on) and, at the headline size, with
machine status off beside it; measures poll rounds, /metrics latency, CPU and
memory, compares our exposition with prometheus_client's ``generate_latest``
over the same snapshot, and writes ``bench/results/results-<timestamp>.json``
and ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine_info
from bench.procs import FleetShape
from bench.render import compare, fleet_config
from bench.report import write_results
from bench.scenario import (
    IdleResult,
    IdleSpec,
    Settings,
    SizeSpec,
    idle_seconds,
    run_idle,
    run_size,
)
from bench.verdicts import HEADLINE, size_report, verdicts

DEFAULT_SIZES = "100,1000,10000,10000x2"
RESULTS = Path(__file__).resolve().parent / "results"
STATUS_CHOICES = {"on": (True,), "off": (False,), "both": (True, False)}


def statuses(choice: str | None, headline: bool) -> tuple[bool, ...]:
    """The machine-status variants to run: ``--status``, else both at the headline
    size (and for the average-CPU run) and the default config (on) elsewhere. Pure."""
    if choice is not None:
        return STATUS_CHOICES[choice]
    return STATUS_CHOICES["both" if headline else "on"]


def parse_sizes(text: str, machines_per_actor: int, status: str | None = None) -> list[SizeSpec]:
    """``"100,1000,10000x2"``: machines, optionally x windows; each size once per
    machine-status variant (see ``statuses``)."""
    specs: list[SizeSpec] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        machines_text, _, windows_text = item.partition("x")
        try:
            machines, windows = int(machines_text), int(windows_text or 1)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"size {item!r}: use MACHINES or MACHINESxWINDOWS"
            ) from None
        if machines < 1 or windows not in (1, 2):
            raise argparse.ArgumentTypeError(f"size {item!r}: machines >= 1, windows 1 or 2")
        fleet = shape(machines, machines_per_actor, windows)
        specs.extend(SizeSpec(item, fleet, on) for on in statuses(status, item == HEADLINE))
    return specs


def shape(machines: int, machines_per_actor: int, windows: int = 1) -> FleetShape:
    actors = max(1, math.ceil(machines / machines_per_actor))
    return FleetShape(actors, min(machines, machines_per_actor), windows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add("--sizes", default=DEFAULT_SIZES, help=f"machines[xWINDOWS],... (default {DEFAULT_SIZES})")
    add("--quick", action="store_true", help="1 round, 8 s of scrapes, 30 s idle-CPU span")
    add(
        "--status",
        choices=sorted(STATUS_CHOICES),
        default=None,
        help=f"machine status variants at every size (default: both at {HEADLINE} machines "
        "and for the average-CPU run, on elsewhere)",
    )
    add("--latency", type=float, default=0.05, help="simulated seconds per answer")
    add("--concurrency", type=int, default=32)
    add("--rate-limit", type=float, default=0.0, help="requests/s, 0 = unlimited")
    add("--machines-per-actor", type=int, default=100)
    add("--rounds", type=int, default=None, help="measured poll rounds per size (3; quick 1)")
    add("--scrape-seconds", type=float, default=None, help="scrape phase length (30; quick 8)")
    add("--idle-machines", type=int, default=1000, help="fleet for the average-CPU run")
    add("--idle-interval", type=float, default=60.0, help="poll interval of the average-CPU run")
    add(
        "--idle-seconds",
        type=float,
        default=None,
        help="its span (status on: 300, one machine_status.interval; off: 120; quick 30; 0 = skip)",
    )
    add("--idle-scrape-every", type=float, default=15.0, help="its scrape period")
    add("--output", type=Path, default=RESULTS, help="results directory")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace) -> Settings:
    quick: bool = args.quick
    return Settings(
        latency=args.latency,
        concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        rounds=args.rounds if args.rounds is not None else (1 if quick else 3),
        scrape_seconds=(
            args.scrape_seconds if args.scrape_seconds is not None else (8.0 if quick else 30.0)
        ),
        quick=quick,
    )


def idle_specs(args: argparse.Namespace) -> list[IdleSpec]:
    """The average-CPU runs: one per machine-status variant (0 s: none)."""
    fleet = shape(args.idle_machines, args.machines_per_actor)
    specs = [
        IdleSpec(
            fleet,
            status,
            args.idle_interval,
            idle_seconds(status, args.quick, args.idle_seconds),
            args.idle_scrape_every,
        )
        for status in statuses(args.status, headline=True)
    ]
    return [spec for spec in specs if spec.seconds > 0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = parse_sizes(args.sizes, args.machines_per_actor, args.status)
    except argparse.ArgumentTypeError as error:
        log(f"error: {error}")
        return 2
    settings = settings_from(args)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    machine = machine_info()
    log(f"bench on {machine.cpu_model} ({machine.cores} cores), Python {machine.python}")

    reports = []
    for spec in specs:
        variant = f"status {'on' if spec.status else 'off'}"
        log(f"size {spec.name}, {variant}: {spec.shape.targets} evDashboard targets")
        live, config = run_size(spec, settings, log)
        log(f"  {spec.name}, {variant}: in-process render comparison")
        render = compare(fleet_config(config), spec.shape, quick=settings.quick)
        reports.append(size_report(live, render))

    idles: list[IdleResult] = []
    for idle in idle_specs(args):
        log(
            f"idle CPU: {idle.shape.machines} machines, interval {idle.interval:g}s, "
            f"status {'on' if idle.status else 'off'}"
        )
        idles.append(run_idle(idle, settings, log))

    json_path, md_path = write_results(
        args.output,
        started_at.strftime("%Y%m%dT%H%M%SZ"),
        settings=settings,
        machine=machine,
        sizes=reports,
        idles=idles,
        started_at=started_at.isoformat(timespec="seconds"),
        duration=time.monotonic() - started,
        argv=sys.argv[1:] if argv is None else list(argv),
    )
    print(md_path.read_text(encoding="utf-8"))
    for check in verdicts(reports, idles):
        if check.met is False:
            log(f"not met: {check.target}: {check.measured} (limit {check.limit})")
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
