"""Config → targets: the list of requests one poll round makes. Pure.

A target is one (actor, machine-or-actor-wide, window) request. Its ``key`` is
stable across reloads, so a target that survives a reload keeps its state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from exporter.config import Config, Secret, WindowConfig

EV_DASHBOARD = "ev_dashboard"  # the request kind of the targets built here


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


def build_targets(config: Config, shard: Shard | None = None) -> tuple[Target, ...]:
    """Every (actor, machine-or-actor-wide, window) target, in config order,
    restricted to ``shard``'s share."""
    targets: list[Target] = []
    for actor in config.actors:
        token = config.token_for(actor)
        for window_index, window in enumerate(config.windows):
            targets.append(
                Target(
                    key=TargetKey(actor.id, "", window.name),
                    actor_id=actor.id,
                    actor=actor.label,
                    currency=actor.currency,
                    machine_id=None,
                    machine_number=None,
                    machine="",
                    window=window,
                    token=token,
                    operator_status=window_index == 0,
                )
            )
            for machine in actor.machines:
                ident = f"id:{machine.id}" if machine.id is not None else f"number:{machine.number}"
                targets.append(
                    Target(
                        key=TargetKey(actor.id, ident, window.name),
                        actor_id=actor.id,
                        actor=actor.label,
                        currency=actor.currency,
                        machine_id=machine.id,
                        machine_number=machine.number,
                        machine=machine.label,
                        window=window,
                        token=token,
                    )
                )
    if shard is not None and shard.count > 1:
        targets = [t for t in targets if shard.owns(t.key)]
    return tuple(targets)
