"""Target states → samples: which series each target publishes, in which families. Pure.

Each request kind names its own families and samples (exporter/kinds/); this
module adds what every target publishes whatever its kind (``nayax_ev_target_up``,
``nayax_ev_target_last_success_timestamp_seconds``, and ``nayax_ev_machine_info``
for the target that speaks for its machine), fixes the order of the families in
the exposition, and is the one place the renderer asks for a state's samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from exporter.kinds import KINDS
from exporter.kinds.base import MACHINE_LABELS, CounterFamily, Family, Sample, machine_labels
from exporter.polling.store import TargetState
from exporter.targets import Target

__all__ = [
    "COUNTER_FAMILIES",
    "COUNTER_INDEX",
    "DATA_FAMILIES",
    "FAMILY_INDEX",
    "MACHINE_INFO",
    "TARGET_LABELS",
    "TARGET_LAST_SUCCESS",
    "TARGET_UP",
    "info_sample",
    "state_samples",
    "target_labels",
]

TARGET_LABELS = ("actor_id", "actor", "machine", "window")
TARGET_UP = Family(
    "nayax_ev_target_up",
    "1 if the last poll of this target returned a complete, valid answer, else 0.",
    TARGET_LABELS,
)
TARGET_LAST_SUCCESS = Family(
    "nayax_ev_target_last_success_timestamp_seconds",
    "Unix time of the last poll of this target that returned data.",
    TARGET_LABELS,
)
MACHINE_INFO = Family(
    "nayax_ev_machine_info",
    "1 per known machine; its kind and place from GET /v1/machines (discovery).",
    (*MACHINE_LABELS, "machine_type", "city", "latitude", "longitude"),
)

_KIND_FAMILIES = tuple(family for kind in KINDS.values() for family in kind.families)
# Exposition order: every kind's gauge families in the registry's order, then the
# ones every target publishes; fixed, so the output is byte-for-byte reproducible.
DATA_FAMILIES: tuple[Family, ...] = (
    *(family for family in _KIND_FAMILIES if not isinstance(family, CounterFamily)),
    MACHINE_INFO,
    TARGET_UP,
    TARGET_LAST_SUCCESS,
)
# The counter families (cumulative windows), after the gauges: their lines differ
# between the text and OpenMetrics formats, so they are rendered apart.
COUNTER_FAMILIES: tuple[CounterFamily, ...] = tuple(
    family for family in _KIND_FAMILIES if isinstance(family, CounterFamily)
)
# Families compare by identity: these lookups hash an object id, not its fields.
FAMILY_INDEX: Mapping[Family, int] = {family: i for i, family in enumerate(DATA_FAMILIES)}
COUNTER_INDEX: Mapping[Family, int] = {family: i for i, family in enumerate(COUNTER_FAMILIES)}


def target_labels(target: Target) -> tuple[tuple[str, str], ...]:
    """The labels of a target's self-observation series. Pure."""
    return (
        ("actor_id", str(target.actor_id)),
        ("actor", target.actor),
        ("machine", target.machine_label),
        ("window", target.window.name),
    )


def state_samples(state: TargetState, now: float, stale_after: float) -> Iterator[Sample]:
    """The samples one target contributes at ``now``; a stale reading contributes
    none of its kind's series, only the self-observation pair (and machine info)."""
    target = state.target
    if state.fresh(now, stale_after):
        assert state.reading is not None  # fresh: a reading is kept
        yield from KINDS[target.kind].samples(target, state.reading)
    if target.publishes_info:
        yield info_sample(target)
    labels = target_labels(target)
    yield Sample(TARGET_UP, labels, 1.0 if state.up else 0.0)
    if state.last_success is not None:
        yield Sample(TARGET_LAST_SUCCESS, labels, state.last_success)


def _coordinate(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}".rstrip("0").rstrip(".")


def info_sample(target: Target) -> Sample:
    """``nayax_ev_machine_info`` for a target's machine (empty labels where unknown). Pure."""
    info = None if target.machine is None else target.machine.info
    extra = (
        (
            "machine_type",
            "" if info is None or info.machine_type is None else str(info.machine_type),
        ),
        ("city", "" if info is None else info.city or ""),
        ("latitude", _coordinate(None if info is None else info.latitude)),
        ("longitude", _coordinate(None if info is None else info.longitude)),
    )
    return Sample(MACHINE_INFO, (*machine_labels(target), *extra), 1.0)
