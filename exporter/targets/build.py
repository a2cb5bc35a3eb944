"""Config → targets: the list of requests one poll round makes. Pure.

A target is one (actor, machine-or-actor-wide, window) request. Its ``key`` is
stable across reloads, so a target that survives a reload keeps its state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.config import ActorConfig, Config, Secret, WindowConfig
from exporter.targets.machines import KnownMachine, MachineInfo, merge_machines

EV_DASHBOARD = "ev_dashboard"  # the request kinds of the targets built here
MACHINE_STATUS = "machine_status"
DISCOVERY = "discovery"


@dataclass(frozen=True)
class TargetKey:
    actor_id: int
    machine: str  # "" for the actor-wide target, else "id:<n>" or "number:<s>"
    window: str  # "" for a kind that has no window
    kind: str = EV_DASHBOARD  # the request kind (exporter/kinds.py)

    def __str__(self) -> str:
        # evDashboard keys keep their historical form: shard assignment hashes it.
        text = f"{self.actor_id}/{self.machine or '-'}/{self.window}"
        return text if self.kind == EV_DASHBOARD else f"{self.kind}:{text}"


@dataclass(frozen=True)
class Target:
    key: TargetKey
    actor_id: int
    actor: str  # display label
    currency: str
    machine_id: int | None
    machine_number: str | None
    machine: str  # display label; "" for the actor-wide target
    window: WindowConfig
    token: Secret
    # Operator status does not depend on the window: one target per actor (the
    # actor-wide one of the first window) publishes it, so it is never duplicated.
    operator_status: bool = False
    info: MachineInfo | None = None  # the machine's discovery record, if listed
    publishes_info: bool = False  # this target publishes nayax_ev_machine_info
    interval: float | None = None  # its own poll interval (None: poll.interval)
    stale_after: float | None = None  # its own staleness (None: poll.stale_after)

    @property
    def kind(self) -> str:
        """The request kind that polls this target (exporter/kinds.py)."""
        return self.key.kind

    @property
    def actor_wide(self) -> bool:
        return self.machine_id is None and self.machine_number is None

    def machine_params(self) -> dict[str, str]:
        if self.machine_id is not None:
            return {"MachineID": str(self.machine_id)}
        if self.machine_number is not None:
            return {"MachineNumber": self.machine_number}
        return {}


@dataclass(frozen=True)
class Shard:
    """This replica's share of the targets: ``index`` in ``0..count-1``."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/4"`` → Shard(2, 4). Raises ValueError with a readable message."""
        try:
            index_text, count_text = text.split("/")
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ValueError(
                f"--shard must look like INDEX/COUNT, e.g. 0/3; got {text!r}"
            ) from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard {text!r}: need COUNT >= 1 and 0 <= INDEX < COUNT")
        return cls(index, count)

    def owns(self, key: TargetKey) -> bool:
        return self.count == 1 or shard_of(key, self.count) == self.index


def _weight(key: TargetKey, replica: int) -> int:
    digest = hashlib.blake2b(f"{key}#{replica}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(key: TargetKey, count: int) -> int:
    """Rendezvous (highest-random-weight) hashing: stable, even, and growing
    ``count`` by one moves only the targets the new replica wins (~1/count)."""
    return max(range(count), key=lambda replica: _weight(key, replica))


Discovered = Mapping[int, Sequence[MachineInfo]]  # actor id -> its last complete listing
STATUS_WINDOW = WindowConfig(name="status")  # the `window` label of status targets
DISCOVERY_WINDOW = WindowConfig(name="discovery")


def _ident(machine: KnownMachine) -> str:
    if machine.machine_id is not None:
        return f"id:{machine.machine_id}"
    return f"number:{machine.number}"


def _scaled_stale(config: Config, interval: float) -> float:
    """As many missed polls before going stale as ``poll.stale_after`` allows."""
    return config.poll.stale_after / config.poll.interval * interval


def _info_on_dashboard(machine: KnownMachine, status: bool) -> bool:
    """Whether a machine's first evDashboard target publishes ``nayax_ev_machine_info``.

    The status target publishes it where there is one (the silent-machine alerts
    join on it). Without one, only a listed machine has anything to add (type,
    city, coordinates): a configured-only machine's info would repeat the labels
    its figures carry, one series per machine for nothing. Pure.
    """
    has_status = status and machine.machine_id is not None
    return not has_status and machine.info is not None


def _actor_targets(
    config: Config, actor: ActorConfig, machines: Sequence[KnownMachine]
) -> list[Target]:
    token = config.token_for(actor)
    status = config.status_enabled
    common = {"actor_id": actor.id, "actor": actor.label, "currency": actor.currency}
    targets: list[Target] = []
    for window_index, window in enumerate(config.windows):
        targets.append(
            Target(
                key=TargetKey(actor.id, "", window.name),
                machine_id=None,
                machine_number=None,
                machine="",
                window=window,
                token=token,
                operator_status=window_index == 0,
                **common,  # type: ignore[arg-type]
            )
        )
        targets.extend(
            Target(
                key=TargetKey(actor.id, _ident(m), window.name),
                machine_id=m.machine_id,
                machine_number=m.number,
                machine=m.label,
                window=window,
                token=token,
                info=m.info,
                publishes_info=window_index == 0 and _info_on_dashboard(m, status),
                **common,  # type: ignore[arg-type]
            )
            for m in machines
        )
    if status:
        interval = config.machine_status.interval
        targets.extend(
            Target(
                key=TargetKey(actor.id, _ident(m), "", kind=MACHINE_STATUS),
                machine_id=m.machine_id,
                machine_number=m.number,
                machine=m.label,
                window=STATUS_WINDOW,
                token=token,
                info=m.info,
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
        key=TargetKey(actor.id, "", "", kind=DISCOVERY),
        actor_id=actor.id,
        actor=actor.label,
        currency=actor.currency,
        machine_id=None,
        machine_number=None,
        machine="",
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
    ones merged with ``discovered`` (exporter/discovery.py). Discovery targets are
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
