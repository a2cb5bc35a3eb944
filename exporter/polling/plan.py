"""What polling runs on: a plan swapped whole on reload, and new plans that keep
what an old one had. Pure.

A plan is the config, the targets by key, the client and its 429 holds, and how
to rebuild the targets when a machine listing changes (discovery): the poller
applies that itself, on its own thread, when a listing it committed differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from exporter.config import Config, RefreshToken
from exporter.lynx.client import LynxClient
from exporter.lynx.ratelimit import TokenGate
from exporter.targets import MachineInfo, Target, TargetKey

__all__ = ["Plan", "Retarget", "replanned", "reusing"]

# The targets for the current machine listings (actor id -> its last complete listing).
Retarget = Callable[[Mapping[int, Sequence[MachineInfo]]], Sequence[Target]]


@dataclass(frozen=True)
class Plan:
    """Everything polling needs, swapped whole on reload."""

    config: Config
    targets: Mapping[TargetKey, Target]
    client: LynxClient
    gate: TokenGate  # the client's per-token 429 holds
    # Rebuilds the targets when a listing changes; None: the caller re-plans (--once).
    retarget: Retarget | None = None

    @cached_property
    def refresh_tokens(self) -> Mapping[int, RefreshToken]:
        """The actors polled on a refresh token, with it. Once per plan: every
        scrape asks (for the token expiry gauge)."""
        return {
            t.actor_id: t.token for t in self.targets.values() if isinstance(t.token, RefreshToken)
        }


def reusing(targets: Sequence[Target], old: Plan | None) -> dict[TargetKey, Target]:
    """``targets`` by key, where each one equal to a target of ``old`` *is* that
    object. The store keeps an unchanged target's state, which holds the old
    object; without this a re-plan would hold two copies of every target."""
    running = {} if old is None else old.targets
    by_key: dict[TargetKey, Target] = {}
    for target in targets:
        same = running.get(target.key)
        kept = same if same is not None and same == target else target
        by_key[kept.key] = kept
    return by_key


def replanned(plan: Plan, listings: Mapping[int, Sequence[MachineInfo]]) -> Plan | None:
    """``plan`` with the targets for ``listings``, or None when they are the same
    (or the plan does not re-plan itself)."""
    if plan.retarget is None:
        return None
    targets = reusing(plan.retarget(listings), plan)
    if targets == plan.targets:
        return None
    return replace(plan, targets=targets)
