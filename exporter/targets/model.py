"""What is polled: a target (one request per poll), its key and the replica's shard. Pure.

A target is one (actor, machine-or-actor-wide, window) request of one kind. Its
``key`` is stable across reloads, so a target that survives a reload keeps its
state, and it decides which shard polls the target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from exporter.config import Secret, WindowConfig
from exporter.targets.machines import Machine

EV_DASHBOARD = "ev_dashboard"  # the request kinds (exporter/kinds/)
MACHINE_STATUS = "machine_status"
DISCOVERY = "discovery"


@dataclass(frozen=True, slots=True)
class TargetKey:
    """A target's identity."""

    actor_id: int
    machine_ref: str  # "" for an actor-wide target, else Machine.ref ("id:<n>"...)
    window: str  # the `window` label: a window's name, "status" or "discovery"
    kind: str = EV_DASHBOARD  # the request kind (exporter/kinds/)

    def __str__(self) -> str:
        # The shard assignment hashes this text: it keeps the form it always had
        # (the machine kinds' keys once held "" as their window).
        window = self.window if self.kind == EV_DASHBOARD else ""
        text = f"{self.actor_id}/{self.machine_ref or '-'}/{window}"
        return text if self.kind == EV_DASHBOARD else f"{self.kind}:{text}"


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakref: kinds/cumulative.py
class Target:
    key: TargetKey
    actor_id: int
    actor: str  # display label
    currency: str
    machine: Machine | None  # None for an actor-wide target
    window: WindowConfig  # its name is the key's (and the `window` label)
    token: Secret
    # Operator status does not depend on the window: one target per actor (the
    # actor-wide one of the first window) publishes it, so it is never duplicated.
    operator_status: bool = False
    publishes_info: bool = False  # this target publishes nayax_ev_machine_info
    interval: float | None = None  # its own poll interval (None: poll.interval)
    stale_after: float | None = None  # its own staleness (None: poll.stale_after)

    @property
    def kind(self) -> str:
        """The request kind that polls this target (exporter/kinds/)."""
        return self.key.kind

    @property
    def actor_wide(self) -> bool:
        return self.machine is None

    @property
    def machine_label(self) -> str:
        """The `machine` label: the machine's, "" for an actor-wide target."""
        return "" if self.machine is None else self.machine.label

    @property
    def machine_id(self) -> int | None:
        return None if self.machine is None else self.machine.machine_id

    @property
    def machine_number(self) -> str | None:
        return None if self.machine is None else self.machine.number

    def machine_params(self) -> dict[str, str]:
        """The evDashboard query parameters naming the machine, if any."""
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
