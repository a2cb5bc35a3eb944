"""What is polled: targets and their keys (``model``), the machines they poll,
configured and listed (``machines``), and config → targets (``build``). Pure."""

from exporter.targets.build import DISCOVERY_WINDOW, STATUS_WINDOW, Discovered, build_targets
from exporter.targets.machines import Machine, MachineInfo, merge_machines, unique_labels
from exporter.targets.model import (
    DISCOVERY,
    EV_DASHBOARD,
    MACHINE_STATUS,
    Shard,
    Target,
    TargetKey,
    shard_of,
)

__all__ = [
    "DISCOVERY",
    "DISCOVERY_WINDOW",
    "EV_DASHBOARD",
    "MACHINE_STATUS",
    "STATUS_WINDOW",
    "Discovered",
    "Machine",
    "MachineInfo",
    "Shard",
    "Target",
    "TargetKey",
    "build_targets",
    "merge_machines",
    "shard_of",
    "unique_labels",
]
