"""``python -m exporter.simulator``: run the Lynx simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

from exporter.simulator.fleet import Fleet, FleetSpec
from exporter.simulator.server import SimulatorServer


def _parse_tokens(values: Sequence[str]) -> Mapping[int, str] | str:
    """``T`` = one token for every actor; ``ACTOR=T`` (repeatable) = per-actor tokens."""
    if not values:
        return "sim-token"
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    tokens: dict[int, str] = {}
    for value in values:
        actor, sep, token = value.partition("=")
        if not sep or not actor.strip().isdigit() or not token:
            raise argparse.ArgumentTypeError(f"expected ACTOR_ID=TOKEN, got {value!r}")
        tokens[int(actor)] = token
    return tokens


def _parse_overrides(values: Sequence[str]) -> tuple[tuple[int, str], ...]:
    out = []
    for value in values:
        actor, sep, symbol = value.partition("=")
        if not sep or not actor.strip().isdigit() or not symbol:
            raise argparse.ArgumentTypeError(f"expected ACTOR_ID=SYMBOL, got {value!r}")
        out.append((int(actor), symbol))
    return tuple(out)


def _parser(defaults: FleetSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description="Simulated Nayax Lynx API (evDashboard, machines, machine status).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 = any free port")
    parser.add_argument("--actors", type=int, default=defaults.actors)
    parser.add_argument("--machines-per-actor", type=int, default=defaults.machines_per_actor)
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        help="bearer token for all actors, or ACTOR_ID=TOKEN (repeatable); default sim-token",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--first-actor-id", type=int, default=defaults.first_actor_id)
    parser.add_argument("--silent-probability", type=float, default=defaults.silent_probability)
    parser.add_argument("--energy-unit", default=defaults.energy_unit_symbol)
    parser.add_argument(
        "--energy-unit-override", action="append", default=[], metavar="ACTOR_ID=SYMBOL"
    )
    parser.add_argument(
        "--timestamps",
        choices=("utc", "machine"),
        default="utc",
        help="convention of /v1/machines/{id}/status timestamps (machine = local time)",
    )
    parser.add_argument("--page-cap", type=int, default=50, help="/v1/machines page cap")
    parser.add_argument(
        "--refresh-token",
        action="append",
        default=[],
        help="a refresh token POST /v1/issue-access-token accepts (repeatable)",
    )
    parser.add_argument(
        "--access-token-lifetime", type=float, default=86400.0, help="seconds (vendor: 24 h)"
    )
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="accept evDashboard without TimePeriod or both dates (the vendor refuses it)",
    )
    parser.add_argument(
        "--other-machines-per-actor", type=int, default=defaults.other_machines_per_actor
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    defaults = FleetSpec()
    parser = _parser(defaults)
    args = parser.parse_args(argv)
    try:
        tokens = _parse_tokens(args.token)
        spec = FleetSpec(
            seed=args.seed,
            actors=args.actors,
            machines_per_actor=args.machines_per_actor,
            first_actor_id=args.first_actor_id,
            silent_probability=args.silent_probability,
            energy_unit_symbol=args.energy_unit,
            energy_unit_overrides=_parse_overrides(args.energy_unit_override),
            other_machines_per_actor=args.other_machines_per_actor,
        )
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    with SimulatorServer(
        Fleet(spec),
        host=args.host,
        port=args.port,
        tokens=tokens,
        latency=args.latency,
        timestamps=args.timestamps,
        page_cap=args.page_cap,
        strict=not args.lenient,
    ) as server:
        server.issuer.lifetime = args.access_token_lifetime
        for refresh in args.refresh_token:
            server.issuer.allow(refresh)
        print(server.url, flush=True)
        print(
            f"actors: {', '.join(map(str, server.fleet.actor_ids()))}",
            file=sys.stderr,
            flush=True,
        )
        # Event.wait with a timeout keeps the main thread responsive to signals.
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
