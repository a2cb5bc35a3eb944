"""The demo: an embedded Lynx simulator on loopback and a built-in config for it."""

from __future__ import annotations

from exporter.config import (
    ActorConfig,
    Config,
    DiscoveryConfig,
    LynxConfig,
    MachineStatusConfig,
    PollConfig,
    Secret,
    WindowConfig,
)
from exporter.simulator import Fleet, FleetSpec, SimulatorServer

DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 - the simulator's own token
# (name, currency, site): each operator its own site, so no two share a charger's name.
DEMO_ACTORS = (
    ("Acme Charging", "EUR", "Harbour Depot"),
    ("Volt Parking", "USD", "North Park"),
    ("Green Garage", "GBP", "Old Town Garage"),
)
DEMO_CHARGERS_PER_ACTOR = 6
# (actor index, chargers forced silent): the only silent ones (no random silence),
# so the landing page, /metrics and the README agree on the count.
DEMO_SILENT = ((0, 1), (2, 2))


def demo_fleet() -> Fleet:
    return Fleet(
        FleetSpec(
            seed=42,
            actors=len(DEMO_ACTORS),
            machines_per_actor=DEMO_CHARGERS_PER_ACTOR,
            silent_probability=0.0,
            silence_period_s=120.0,
            energy_unit_overrides=(),
            sites=tuple(site for _, _, site in DEMO_ACTORS),
        )
    )


def start_simulator(host: str, port: int) -> SimulatorServer:
    fleet = demo_fleet()
    for index, count in DEMO_SILENT:
        fleet.silence(fleet.actor_ids()[index], count)  # last keep-alive 2 h ago
    simulator = SimulatorServer(fleet, host=host, port=port, tokens=DEMO_TOKEN)
    simulator.start()
    return simulator


def demo_config(simulator: SimulatorServer, interval: float = 10.0) -> Config:
    """Every actor of the simulated fleet, its machines found by discovery (none
    typed by hand), two windows and a year-to-date counter, a short interval,
    machine status as often."""
    fleet = simulator.fleet
    actors = tuple(
        ActorConfig(id=actor_id, name=name, currency=currency, discover=True)
        for (name, currency, _), actor_id in zip(DEMO_ACTORS, fleet.actor_ids(), strict=True)
    )
    return Config(
        actors=actors,
        lynx=LynxConfig(
            base_url=simulator.url,
            token=Secret(DEMO_TOKEN),
            timeout=5.0,
            rate_limit_per_second=50.0,
            max_concurrency=4,
        ),
        poll=PollConfig(interval=interval, stale_after=3 * interval),
        windows=(
            WindowConfig(name="24h", rolling=86400.0),
            WindowConfig(name="today", calendar="day", timezone="Europe/Berlin"),
            # Counters since 1 January (docs/counters.md); the simulator answers any
            # range, so one request per poll from the anchor.
            WindowConfig(
                name="ytd", cumulative="year", timezone="Europe/Berlin", max_request_span="year"
            ),
        ),
        discovery=DiscoveryConfig(interval=6 * interval),
        machine_status=MachineStatusConfig(enabled=True, interval=interval),
    )
