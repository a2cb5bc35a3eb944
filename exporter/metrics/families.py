"""Readings → samples: which series a target state publishes. Pure.

Both the custom collector (fresh ``*MetricFamily`` objects) and the fast
pre-rendered exposition are built from these definitions, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from exporter.kinds.discovery import Discovery
from exporter.kinds.ev_dashboard import Reading
from exporter.kinds.machine_status import MachineStatus
from exporter.metrics.machine_families import (
    MACHINE_FAMILIES,
    MachineSample,
    discovered_sample,
    info_sample,
    machine_labels,
    status_samples,
)
from exporter.polling.store import TargetState
from exporter.targets import EV_DASHBOARD, KnownMachine, Target

_POLLED = "Polled in the background from the Lynx API evDashboard endpoint"

OPERATOR_LABELS = ("actor_id", "actor")
ACTOR_WINDOW_LABELS = ("actor_id", "actor", "window")
MACHINE_WINDOW_LABELS = ("actor_id", "actor", "machine_id", "machine_number", "machine", "window")
TARGET_LABELS = ("actor_id", "actor", "machine", "window")

ValueOf = Callable[[Reading], float | None]


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...]
    value: ValueOf | None = None  # None for the self-observation families
    currency: bool = False  # carries the extra `currency` label


def _op(field: str, what: str, attr: str) -> Family:
    return Family(
        name=f"nayax_ev_operator_{what}",
        help=f"OperatorDashboard.{field}. {_POLLED}.",
        labels=OPERATOR_LABELS,
        value=lambda r: getattr(r.operator, attr),
    )


def _figure(scope: str, field: str, name: str, attr: str, unit_note: str) -> Family:
    per_machine = scope == "machine"
    where = "for one machine" if per_machine else "across the actor's machines"
    return Family(
        name=f"nayax_ev_{scope}_{name}",
        help=f"MachineDashboard.{field} {where} over the window{unit_note}. {_POLLED}.",
        labels=MACHINE_WINDOW_LABELS if per_machine else ACTOR_WINDOW_LABELS,
        value=lambda r: getattr(r.figures, attr),
        currency=name == "sales_amount",
    )


def _figures(scope: str) -> tuple[Family, ...]:
    return (
        _figure(scope, "NumberOfChargingSessions", "charging_sessions", "charging_sessions", ""),
        _figure(scope, "NumberOfTransactionsForTimeInterval", "transactions", "transactions", ""),
        _figure(
            scope,
            "SalesAmountForTimeInterval",
            "sales_amount",
            "sales_amount",
            ", in the actor's currency",
        ),
        _figure(
            scope,
            "TotalChargingSessionsDuration",
            "charging_duration_seconds",
            "charging_duration_seconds",
            ", converted to seconds",
        ),
        _figure(
            scope,
            "TotalEnergyConsumption",
            "energy_joules",
            "energy_joules",
            ", converted to joules from UnitOfMeasureSymbol",
        ),
    )


OPERATOR_FAMILIES: tuple[Family, ...] = (
    _op("TotalOperatorMachines", "machines", "machines"),
    _op("TotalCommunicatingMachines", "communicating_machines", "communicating"),
    _op("TotalActiveMachines", "active_machines", "active"),
    _op("TotalSilentMachines", "silent_machines", "silent"),
)
ACTOR_FIGURE_FAMILIES = _figures("operator")
MACHINE_FIGURE_FAMILIES = _figures("machine")

TARGET_UP = Family(
    name="nayax_ev_target_up",
    help="1 if the last poll of this target returned a complete, valid answer, else 0.",
    labels=TARGET_LABELS,
)
TARGET_LAST_SUCCESS = Family(
    name="nayax_ev_target_last_success_timestamp_seconds",
    help="Unix time of the last poll of this target that returned data.",
    labels=TARGET_LABELS,
)

# Machine status and discovery (exporter/machine_samples.py computes their values).
MACHINE_STATUS_FAMILIES: tuple[Family, ...] = tuple(
    Family(name=f.name, help=f.help, labels=f.labels) for f in MACHINE_FAMILIES
)

# Exposition order: fixed, so the output is byte-for-byte reproducible.
DATA_FAMILIES: tuple[Family, ...] = (
    *OPERATOR_FAMILIES,
    *ACTOR_FIGURE_FAMILIES,
    *MACHINE_FIGURE_FAMILIES,
    *MACHINE_STATUS_FAMILIES,
    TARGET_UP,
    TARGET_LAST_SUCCESS,
)
FAMILY_INDEX = {family.name: i for i, family in enumerate(DATA_FAMILIES)}


@dataclass(frozen=True)
class Sample:
    family: int  # index into DATA_FAMILIES
    labels: tuple[tuple[str, str], ...]
    value: float


def state_samples(state: TargetState, now: float, stale_after: float) -> Iterator[Sample]:
    """The samples one target contributes at ``now``; a stale reading contributes
    none of its figures, only the self-observation pair."""
    target = state.target
    actor_id = str(target.actor_id)
    if target.kind != EV_DASHBOARD:
        yield from _machine_kind_samples(state, now, stale_after)
    elif state.fresh(now, stale_after):
        reading = state.reading
        assert isinstance(reading, Reading)  # the evDashboard kind's result
        labels: tuple[tuple[str, str], ...]
        if target.actor_wide:
            labels = (("actor_id", actor_id), ("actor", target.actor))
            if target.operator_status:
                yield from _values(OPERATOR_FAMILIES, reading, labels, target.currency)
            labels = (*labels, ("window", target.window.name))
            yield from _values(ACTOR_FIGURE_FAMILIES, reading, labels, target.currency)
        else:
            labels = (
                ("actor_id", actor_id),
                ("actor", target.actor),
                ("machine_id", "" if target.machine_id is None else str(target.machine_id)),
                ("machine_number", target.machine_number or ""),
                ("machine", target.machine),
                ("window", target.window.name),
            )
            yield from _values(MACHINE_FIGURE_FAMILIES, reading, labels, target.currency)
    if target.publishes_info:
        yield _machine_sample(info_sample(target.actor_id, target.actor, known_machine(target)))
    target_labels = (
        ("actor_id", actor_id),
        ("actor", target.actor),
        ("machine", target.machine),
        ("window", target.window.name),
    )
    yield Sample(FAMILY_INDEX[TARGET_UP.name], target_labels, 1.0 if state.up else 0.0)
    if state.last_success is not None:
        yield Sample(FAMILY_INDEX[TARGET_LAST_SUCCESS.name], target_labels, state.last_success)


def known_machine(target: Target) -> KnownMachine:
    return KnownMachine(target.machine_id, target.machine_number, target.machine, target.info)


def _machine_sample(sample: MachineSample) -> Sample:
    return Sample(FAMILY_INDEX[sample.family], sample.labels, sample.value)


def _machine_kind_samples(state: TargetState, now: float, stale_after: float) -> Iterator[Sample]:
    """Samples of a machine-status or discovery target (not its target_up pair)."""
    target, reading = state.target, state.reading
    if not state.fresh(now, stale_after):
        return
    if isinstance(reading, MachineStatus):
        labels = machine_labels(target.actor_id, target.actor, known_machine(target))
        yield from map(_machine_sample, status_samples(labels, reading))
    elif isinstance(reading, Discovery):
        count = len(reading.machines)
        yield _machine_sample(discovered_sample(target.actor_id, target.actor, count))


def _values(
    families: tuple[Family, ...],
    reading: Reading,
    labels: tuple[tuple[str, str], ...],
    currency: str,
) -> Iterator[Sample]:
    for family in families:
        assert family.value is not None
        value = family.value(reading)
        if value is None:
            continue  # absent stays absent: never a made-up 0
        family_labels = (*labels, ("currency", currency)) if family.currency else labels
        yield Sample(FAMILY_INDEX[family.name], family_labels, value)


def family_label_names(family: Family) -> tuple[str, ...]:
    return (*family.labels, "currency") if family.currency else family.labels
