"""Config → targets: what one poll round asks for (``build``), and the machines an
actor's targets poll, configured and listed (``machines``). Pure."""

from exporter.targets.build import (
    DISCOVERY,
    DISCOVERY_WINDOW,
    EV_DASHBOARD,
    MACHINE_STATUS,
    STATUS_WINDOW,
    Discovered,
    Shard,
    Target,
    TargetKey,
    build_targets,
    shard_of,
)
from exporter.targets.machines import KnownMachine, MachineInfo, merge_machines, unique_labels

__all__ = [
    "DISCOVERY",
    "DISCOVERY_WINDOW",
    "EV_DASHBOARD",
    "MACHINE_STATUS",
    "STATUS_WINDOW",
    "Discovered",
    "KnownMachine",
    "MachineInfo",
    "Shard",
    "Target",
    "TargetKey",
    "build_targets",
    "merge_machines",
    "shard_of",
    "unique_labels",
]
