"""Machine status and discovery → samples: the per-machine series. Pure.

Families (labels ``actor_id, actor, machine_id, machine_number, machine``):
the status families below, ``nayax_ev_machine_info`` (value 1, plus
``machine_type, city, latitude, longitude`` from discovery) and
``nayax_ev_discovered_machines{actor_id, actor}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from exporter.kinds.machine_status import MachineStatus
from exporter.targets import KnownMachine

__all__ = [
    "DISCOVERED_MACHINES",
    "MACHINE_FAMILIES",
    "MACHINE_INFO",
    "MACHINE_LABELS",
    "STATUS_FAMILIES",
    "MachineFamily",
    "MachineSample",
    "discovered_sample",
    "info_sample",
    "machine_labels",
    "status_samples",
]

MACHINE_LABELS: Final = ("actor_id", "actor", "machine_id", "machine_number", "machine")
INFO_LABELS: Final = (*MACHINE_LABELS, "machine_type", "city", "latitude", "longitude")
_STATUS = "From GET /v1/machines/{MachineID}/status"


@dataclass(frozen=True)
class MachineFamily:
    name: str
    help: str
    labels: tuple[str, ...]
    value: Callable[[MachineStatus], float | None] | None = None


@dataclass(frozen=True)
class MachineSample:
    family: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _ts(name: str, field: str, attr: str) -> MachineFamily:
    return MachineFamily(
        name=f"nayax_ev_machine_{name}_timestamp_seconds",
        help=f"{field} as Unix time (see machine_status.timestamps). {_STATUS}.",
        labels=MACHINE_LABELS,
        value=lambda s: getattr(s, attr),
    )


STATUS_FAMILIES: Final = (
    _ts("last_keepalive", "LastKeepAliveDateTime", "last_keepalive"),
    MachineFamily(
        "nayax_ev_machine_mqtt_connected",
        f"1 if MachineMQTTStatus says the machine is connected over MQTT, else 0. {_STATUS}.",
        MACHINE_LABELS,
        lambda s: s.mqtt_connected,
    ),
    _ts("last_transaction", "LastTransactionDateTime", "last_transaction"),
    _ts("last_power_up", "LastPowerUpDateTime", "last_power_up"),
    _ts("last_power_down", "LastPowerDownDateTime", "last_power_down"),
    MachineFamily(
        "nayax_ev_machine_gprs_failures",
        f"LastGPRSFailureCount: GPRS failures at the last connection attempt. {_STATUS}.",
        MACHINE_LABELS,
        lambda s: s.gprs_failures,
    ),
    MachineFamily(
        "nayax_ev_machine_signal_rssi",
        f"LastReceptionLevel(RSSI): the last signal level reported. {_STATUS}.",
        MACHINE_LABELS,
        lambda s: s.signal_rssi,
    ),
)
MACHINE_INFO: Final = MachineFamily(
    "nayax_ev_machine_info",
    "1 per known machine; its kind and place from GET /v1/machines (discovery).",
    INFO_LABELS,
)
DISCOVERED_MACHINES: Final = MachineFamily(
    "nayax_ev_discovered_machines",
    "Machines of the actor kept from its last complete GET /v1/machines listing.",
    ("actor_id", "actor"),
)
MACHINE_FAMILIES: Final = (*STATUS_FAMILIES, MACHINE_INFO, DISCOVERED_MACHINES)


def machine_labels(actor_id: int, actor: str, machine: KnownMachine) -> tuple[tuple[str, str], ...]:
    """The five identifying labels of a machine's series. Pure."""
    return (
        ("actor_id", str(actor_id)),
        ("actor", actor),
        ("machine_id", "" if machine.machine_id is None else str(machine.machine_id)),
        ("machine_number", machine.number or ""),
        ("machine", machine.label),
    )


def status_samples(
    labels: tuple[tuple[str, str], ...], status: MachineStatus
) -> tuple[MachineSample, ...]:
    """One sample per status family whose field was present. Pure."""
    out = []
    for family in STATUS_FAMILIES:
        value = family.value(status) if family.value is not None else None
        if value is not None:
            out.append(MachineSample(family.name, labels, value))
    return tuple(out)


def _coordinate(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}".rstrip("0").rstrip(".")


def info_sample(actor_id: int, actor: str, machine: KnownMachine) -> MachineSample:
    """``nayax_ev_machine_info`` for a machine (empty labels where unknown). Pure."""
    info = machine.info
    extra = (
        (
            "machine_type",
            "" if info is None or info.machine_type is None else str(info.machine_type),
        ),
        ("city", "" if info is None else info.city or ""),
        ("latitude", _coordinate(None if info is None else info.latitude)),
        ("longitude", _coordinate(None if info is None else info.longitude)),
    )
    return MachineSample(
        MACHINE_INFO.name, (*machine_labels(actor_id, actor, machine), *extra), 1.0
    )


def discovered_sample(actor_id: int, actor: str, count: int) -> MachineSample:
    return MachineSample(
        DISCOVERED_MACHINES.name, (("actor_id", str(actor_id)), ("actor", actor)), float(count)
    )
