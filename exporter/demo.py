"""The demo: an embedded Lynx simulator on loopback and a built-in config for it."""

from __future__ import annotations

from exporter.config import (
    ActorConfig,
    Config,
    LynxConfig,
    MachineConfig,
    PollConfig,
    Secret,
    WindowConfig,
)
from exporter.simulator import Fleet, FleetSpec, SimulatorServer

DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 - the simulator's own token
DEMO_ACTORS = (("Acme Charging", "EUR"), ("Volt Parking", "USD"), ("Green Garage", "GBP"))


def demo_fleet() -> Fleet:
    return Fleet(
        FleetSpec(
            seed=42,
            actors=len(DEMO_ACTORS),
            machines_per_actor=6,
            silent_probability=0.15,
            silence_period_s=120.0,
            energy_unit_overrides=(),
        )
    )


def start_simulator(host: str, port: int) -> SimulatorServer:
    simulator = SimulatorServer(demo_fleet(), host=host, port=port, tokens=DEMO_TOKEN)
    simulator.start()
    return simulator


def demo_config(simulator: SimulatorServer, interval: float = 10.0) -> Config:
    """Every actor and machine of the simulated fleet, two windows, a short interval."""
    fleet = simulator.fleet
    actors = []
    for (name, currency), actor_id in zip(DEMO_ACTORS, fleet.actor_ids(), strict=True):
        machines = tuple(
            # Half by id with a display name, half by number: both paths get exercised.
            MachineConfig(id=m.id, name=m.name) if i % 2 == 0 else MachineConfig(number=m.number)
            for i, m in enumerate(fleet.machines(actor_id))
        )
        actors.append(ActorConfig(id=actor_id, name=name, currency=currency, machines=machines))
    return Config(
        actors=tuple(actors),
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
        ),
    )
