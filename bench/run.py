"""``python -m bench.run`` (or ``python bench/run.py``): the scale benchmark.

Runs the simulator and the exporter as separate processes at each fleet size,
measures poll rounds, /metrics latency, CPU and memory, compares our exposition
with prometheus_client's ``generate_latest`` over the same snapshot, and writes
``bench/results/results-<timestamp>.json`` and ``bench/results/latest.md``.
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

from bench.procs import FleetShape
from bench.render import compare, fleet_config
from bench.report import machine_info, size_report, verdicts, write_results
from bench.scenario import IdleResult, Settings, SizeSpec, run_idle, run_size

DEFAULT_SIZES = "100,1000,10000,10000x2"
RESULTS = Path(__file__).resolve().parent / "results"


def parse_sizes(text: str, machines_per_actor: int) -> list[SizeSpec]:
    """``"100,1000,10000x2"``: machines, optionally x windows."""
    specs = []
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
        specs.append(SizeSpec(item, shape(machines, machines_per_actor, windows)))
    return specs


def shape(machines: int, machines_per_actor: int, windows: int = 1) -> FleetShape:
    actors = max(1, math.ceil(machines / machines_per_actor))
    return FleetShape(actors, min(machines, machines_per_actor), windows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add = parser.add_argument
    add("--sizes", default=DEFAULT_SIZES, help=f"machines[xWINDOWS],... (default {DEFAULT_SIZES})")
    add("--quick", action="store_true", help="1 round, 8 s of scrapes, 30 s idle-CPU span")
    add("--latency", type=float, default=0.05, help="simulated seconds per answer")
    add("--concurrency", type=int, default=32)
    add("--rate-limit", type=float, default=0.0, help="requests/s, 0 = unlimited")
    add("--machines-per-actor", type=int, default=100)
    add("--rounds", type=int, default=None, help="measured poll rounds per size (3; quick 1)")
    add("--scrape-seconds", type=float, default=None, help="scrape phase length (30; quick 8)")
    add("--idle-machines", type=int, default=1000, help="fleet for the average-CPU run")
    add("--idle-interval", type=float, default=60.0, help="poll interval of the average-CPU run")
    add("--idle-seconds", type=float, default=None, help="its span (120; quick 30; 0 = skip)")
    add("--idle-scrape-every", type=float, default=15.0, help="its scrape period")
    add("--output", type=Path, default=RESULTS, help="results directory")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = parse_sizes(args.sizes, args.machines_per_actor)
    except argparse.ArgumentTypeError as error:
        log(f"error: {error}")
        return 2
    quick: bool = args.quick
    settings = Settings(
        latency=args.latency,
        concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        rounds=args.rounds if args.rounds is not None else (1 if quick else 3),
        scrape_seconds=(
            args.scrape_seconds if args.scrape_seconds is not None else (8.0 if quick else 30.0)
        ),
        quick=quick,
    )
    idle_seconds: float = (
        args.idle_seconds if args.idle_seconds is not None else (30.0 if quick else 120.0)
    )
    started_at = datetime.now(UTC)
    started = time.monotonic()
    machine = machine_info()
    log(f"bench on {machine.cpu_model} ({machine.cores} cores), Python {machine.python}")

    reports = []
    for spec in specs:
        log(f"size {spec.name}: {spec.shape.targets} targets")
        live, config = run_size(spec, settings, log)
        log(f"  {spec.name}: in-process render comparison")
        render = compare(fleet_config(config), spec.shape, quick=quick)
        reports.append(size_report(live, render))

    idle: IdleResult | None = None
    if idle_seconds > 0:
        idle_shape = shape(args.idle_machines, args.machines_per_actor)
        log(f"idle CPU: {idle_shape.machines} machines, interval {args.idle_interval:g}s")
        idle = run_idle(
            idle_shape,
            settings,
            interval=args.idle_interval,
            seconds=idle_seconds,
            scrape_every=args.idle_scrape_every,
            log=log,
        )

    json_path, md_path = write_results(
        args.output,
        started_at.strftime("%Y%m%dT%H%M%SZ"),
        settings=settings,
        machine=machine,
        sizes=reports,
        idle=idle,
        started_at=started_at.isoformat(timespec="seconds"),
        duration=time.monotonic() - started,
        argv=sys.argv[1:] if argv is None else list(argv),
    )
    print(md_path.read_text(encoding="utf-8"))
    for check in verdicts(reports, idle):
        if check.met is False:
            log(f"not met: {check.target}: {check.measured} (limit {check.limit})")
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
