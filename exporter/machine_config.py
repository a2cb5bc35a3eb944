"""The ``discovery:`` and ``machine_status:`` config sections and ``actors[].discover``.

Pure: each function reads one raw YAML node and appends problems, with their key
paths, to ``errors`` (the config loader reports every problem at once).

    discovery:
      interval: 1h                       # how often machine lists are re-read
      machine_types: [555007, 30000526]  # default: the EV kinds; [] = every kind
    machine_status:
      enabled: true        # default: true when any machine is configured or discovered
      interval: 5m
      timestamps: utc      # utc | machine | an IANA zone such as Europe/Berlin
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EV_MACHINE_TYPES",
    "TIMESTAMP_CONVENTIONS",
    "DiscoveryConfig",
    "MachineStatusConfig",
    "parse_discover_flag",
    "parse_discovery",
    "parse_machine_status",
]

# MachineTypeID 555007 = "OCPP Electrical Vehicle", 30000526 = "Electricity".
EV_MACHINE_TYPES: Final = (555007, 30000526)
TIMESTAMP_CONVENTIONS: Final = ("utc", "machine")
_INT32_MAX: Final = 2**31 - 1
_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_FACTORS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Bounds for the two intervals: below a second would flood the API, above a week
# would make a removed machine linger for ever.
_MIN_INTERVAL: Final = 1.0
_MAX_INTERVAL: Final = 7 * 86400.0


@dataclass(frozen=True)
class DiscoveryConfig:
    interval: float = 3600.0
    machine_types: tuple[int, ...] = EV_MACHINE_TYPES  # () = every kind

    def keeps(self, machine_type: int | None) -> bool:
        """Is a machine of this MachineTypeID kept? Unknown kinds only with ``[]``."""
        return not self.machine_types or machine_type in self.machine_types


@dataclass(frozen=True)
class MachineStatusConfig:
    enabled: bool | None = None  # None: on when any machine is configured or discovered
    interval: float = 300.0
    timestamps: str = "utc"  # "utc", "machine" or an IANA zone name


def _mapping(
    node: object, path: str, allowed: Sequence[str], errors: list[str]
) -> dict[str, object]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        errors.append(f"{path}: must be a mapping")
        return {}
    for key in node:
        if key not in allowed:
            errors.append(f"{path}.{key}: unknown key; allowed: {', '.join(allowed)}")
    return {k: v for k, v in node.items() if k in allowed}


def _duration(node: object, path: str, default: float, errors: list[str]) -> float:
    if node is None:
        return default
    seconds: float | None = None
    if isinstance(node, str):
        match = _DURATION_RE.match(node)
        if match:
            seconds = float(match.group(1)) * _FACTORS[match.group(2)]
    elif isinstance(node, int | float) and not isinstance(node, bool):
        seconds = float(node)
    if seconds is None or not math.isfinite(seconds):
        errors.append(f"{path}: must be a duration like 30s, 5m or 1h")
        return default
    if not _MIN_INTERVAL <= seconds <= _MAX_INTERVAL:
        errors.append(f"{path}: must be between 1s and 7d")
        return default
    return seconds


def _bool(node: object, path: str, errors: list[str]) -> bool | None:
    if node is None or isinstance(node, bool):
        return node
    errors.append(f"{path}: must be true or false")
    return None


def parse_discovery(node: object, errors: list[str]) -> DiscoveryConfig:
    """The ``discovery:`` section. Pure."""
    raw = _mapping(node, "discovery", ("interval", "machine_types"), errors)
    interval = _duration(raw.get("interval"), "discovery.interval", 3600.0, errors)
    types_node = raw.get("machine_types")
    if types_node is None:
        return DiscoveryConfig(interval=interval)
    if not isinstance(types_node, list):
        errors.append("discovery.machine_types: must be a list of MachineTypeID integers")
        return DiscoveryConfig(interval=interval)
    types: list[int] = []
    for index, item in enumerate(types_node):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= _INT32_MAX:
            errors.append(f"discovery.machine_types[{index}]: must be a MachineTypeID integer")
        elif item not in types:
            types.append(item)
    return DiscoveryConfig(interval=interval, machine_types=tuple(types))


def parse_machine_status(node: object, errors: list[str]) -> MachineStatusConfig:
    """The ``machine_status:`` section. Pure."""
    raw = _mapping(node, "machine_status", ("enabled", "interval", "timestamps"), errors)
    enabled = _bool(raw.get("enabled"), "machine_status.enabled", errors)
    interval = _duration(raw.get("interval"), "machine_status.interval", 300.0, errors)
    timestamps = raw.get("timestamps", "utc")
    if not isinstance(timestamps, str) or not _is_convention(timestamps):
        errors.append(
            "machine_status.timestamps: must be utc, machine or an IANA time zone "
            "such as Europe/Berlin"
        )
        timestamps = "utc"
    return MachineStatusConfig(enabled=enabled, interval=interval, timestamps=timestamps)


def _is_convention(text: str) -> bool:
    if text in TIMESTAMP_CONVENTIONS:
        return True
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_discover_flag(node: object, path: str, errors: list[str]) -> bool:
    """``actors[i].discover``: list this actor's machines from the API. Pure."""
    return bool(_bool(node, path, errors))
