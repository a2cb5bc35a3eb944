"""Config (and the machine listings) → targets: the requests one poll round makes. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from exporter.config import ActorConfig, Config, WindowConfig
from exporter.targets.machines import Machine, MachineInfo, merge_machines
from exporter.targets.model import DISCOVERY, MACHINE_STATUS, Shard, Target, TargetKey

Discovered = Mapping[int, Sequence[MachineInfo]]  # actor id -> its last complete listing
STATUS_WINDOW = WindowConfig(name="status")  # the `window` label of status targets
DISCOVERY_WINDOW = WindowConfig(name="discovery")


def _scaled_stale(config: Config, interval: float) -> float:
    """As many missed polls before going stale as ``poll.stale_after`` allows."""
    return config.poll.stale_after / config.poll.interval * interval


def _info_on_dashboard(machine: Machine, status: bool) -> bool:
    """Whether a machine's first evDashboard target publishes ``nayax_ev_machine_info``.

    The status target publishes it where there is one (the silent-machine alerts
    join on it). Without one, only a listed machine has anything to add (type,
    city, coordinates): a configured-only machine's info would repeat the labels
    its figures carry, one series per machine for nothing. Pure.
    """
    has_status = status and machine.machine_id is not None
    return not has_status and machine.info is not None


def _actor_targets(config: Config, actor: ActorConfig, machines: Sequence[Machine]) -> list[Target]:
    token = config.token_for(actor)
    status = config.status_enabled
    common = {"actor_id": actor.id, "actor": actor.label, "currency": actor.currency}
    targets: list[Target] = []
    for window_index, window in enumerate(config.windows):
        targets.append(
            Target(
                key=TargetKey(actor.id, "", window.name),
                machine=None,
                window=window,
                token=token,
                operator_status=window_index == 0,
                **common,  # type: ignore[arg-type]
            )
        )
        targets.extend(
            Target(
                key=TargetKey(actor.id, m.ref, window.name),
                machine=m,
                window=window,
                token=token,
                publishes_info=window_index == 0 and _info_on_dashboard(m, status),
                **common,  # type: ignore[arg-type]
            )
            for m in machines
        )
    if status:
        interval = config.machine_status.interval
        targets.extend(
            Target(
                key=TargetKey(actor.id, m.ref, STATUS_WINDOW.name, kind=MACHINE_STATUS),
                machine=m,
                window=STATUS_WINDOW,
                token=token,
                publishes_info=True,
                interval=interval,
                stale_after=_scaled_stale(config, interval),
                **common,  # type: ignore[arg-type]
            )
            for m in machines
            if m.machine_id is not None  # /status needs the MachineID
        )
    return targets


def _discovery_target(config: Config, actor: ActorConfig) -> Target:
    interval = config.discovery.interval
    return Target(
        key=TargetKey(actor.id, "", DISCOVERY_WINDOW.name, kind=DISCOVERY),
        actor_id=actor.id,
        actor=actor.label,
        currency=actor.currency,
        machine=None,
        window=DISCOVERY_WINDOW,
        token=config.token_for(actor),
        interval=interval,
        stale_after=_scaled_stale(config, interval),
    )


def build_targets(
    config: Config, shard: Shard | None = None, discovered: Discovered | None = None
) -> tuple[Target, ...]:
    """Every target, in config order, restricted to ``shard``'s share: per actor and
    window the actor-wide and per-machine evDashboard requests, per machine its
    status, and per discovering actor its listing. Machines are the configured
    ones merged with ``discovered`` (exporter/targets/machines.py). Discovery targets are
    never sharded: every replica needs the whole list to find its share."""
    targets: list[Target] = []
    listings: list[Target] = []
    for actor in config.actors:
        listing = (discovered or {}).get(actor.id) if actor.discover else None
        targets.extend(_actor_targets(config, actor, merge_machines(actor.machines, listing)))
        if actor.discover:
            listings.append(_discovery_target(config, actor))
    if shard is not None and shard.count > 1:
        targets = [t for t in targets if shard.owns(t.key)]
    return (*targets, *listings)
