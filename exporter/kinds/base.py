"""What a request kind is: the extension point for a new Lynx endpoint.

A kind (one module per endpoint in this package) owns everything about it:

- ``name``: the kind's id, also ``TargetKey.kind`` of every target it polls;
- ``families``: the metric families its readings publish;
- ``fetch(get_json, target, now)``: *what to ask and how* — one GET through the
  client (which adds the base URL, the token, retries and pacing), or as many as
  a paged listing needs;
- ``parse(payload, target, config, now)``: *how to read the answer* — a pure
  function reading every value through the upstream boundary
  (exporter/lynx/upstream.py) into a :class:`Result`; it raises
  :class:`~exporter.lynx.errors.BadPayloadError` when the answer as a whole is
  unusable;
- ``samples(target, reading)``: the series a fresh reading publishes.

Everything else is the same for every kind: the poller fires, defers and skips
targets alike, the store decides up/down from ``problems``, the counters count
``problems`` and ``dropped`` in one place, and the exposition renders samples.
A new endpoint touches its kind's module, the registry (exporter/kinds/__init__.py)
and the targets that poll it (exporter/targets/build.py), nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from exporter.config import Config, Secret
from exporter.lynx.client import Answer
from exporter.lynx.upstream import Dropped
from exporter.targets import Target

__all__ = [
    "MACHINE_LABELS",
    "CounterFamily",
    "CounterSample",
    "Family",
    "GetJson",
    "Problem",
    "RequestKind",
    "Result",
    "Sample",
    "machine_labels",
]

# The client's GET: path below lynx.base_url, query parameters, credential.
GetJson = Callable[[str, Mapping[str, str], Secret], Answer]
# The labels every per-machine series carries, in this order.
MACHINE_LABELS = ("actor_id", "actor", "machine_id", "machine_number", "machine")


@dataclass(frozen=True, slots=True)
class Problem:
    """A field we could not use. ``reason`` is a poll-error reason label."""

    reason: str  # "bad_payload" | "unknown_unit"
    field: str
    detail: str


class Result(Protocol):
    """What a kind's parse returns: anything that says which of its fields were
    unusable (``problems``: the target is down), what it noticed without failing
    (``notices``, e.g. clock skew: counted as poll errors and logged when they
    appear, the target stays up) and which values it read as absent (``dropped``:
    only counted)."""

    @property
    def problems(self) -> Sequence[Problem]: ...

    @property
    def notices(self) -> Sequence[Problem]: ...

    @property
    def dropped(self) -> Sequence[Dropped]: ...


@dataclass(frozen=True, eq=False)  # identity: a family is looked up by the object
class Family:
    """One gauge family of the data exposition."""

    name: str
    help: str
    labels: tuple[str, ...]  # label names, in the order samples carry them


@dataclass(frozen=True, eq=False)
class CounterFamily(Family):
    """One counter family: ``name`` is its OpenMetrics name, its series are
    ``<name>_total`` (and ``<name>_created`` in OpenMetrics). Rendered apart from
    the gauges, once per exposition format (exporter/metrics/exposition.py)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value; ``labels`` in the family's order."""

    family: Family
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class CounterSample(Sample):
    """A counter's value, and the Unix time it last started from 0 (None: not told)."""

    created: float | None = None


def machine_labels(target: Target) -> tuple[tuple[str, str], ...]:
    """The identifying labels of a target's machine (:data:`MACHINE_LABELS`). Pure."""
    machine_id = target.machine_id
    return (
        ("actor_id", str(target.actor_id)),
        ("actor", target.actor),
        ("machine_id", "" if machine_id is None else str(machine_id)),
        ("machine_number", target.machine_number or ""),
        ("machine", target.machine_label),
    )


class RequestKind(Protocol):
    """One Lynx endpoint (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def families(self) -> tuple[Family, ...]: ...

    def fetch(self, get_json: GetJson, target: Target, now: datetime) -> Answer:
        """The answer for ``target`` at ``now``; raises the client's LynxError."""
        ...

    def parse(self, payload: object, target: Target, config: Config, now: float) -> Result:
        """Pure: the answer read; raises BadPayloadError if it is unusable as a whole."""
        ...

    def samples(self, target: Target, reading: Result) -> Iterator[Sample]:
        """Pure: the series a fresh reading of this kind publishes."""
        ...
