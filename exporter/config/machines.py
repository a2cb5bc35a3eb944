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

import zoneinfo
from typing import Final

from exporter.config.model import TIMESTAMP_CONVENTIONS, DiscoveryConfig, MachineStatusConfig
from exporter.config.validate import Validator

__all__ = [
    "parse_discover_flag",
    "parse_discovery",
    "parse_machine_status",
]

_INT32_MAX: Final = 2**31 - 1
# Bounds for the two intervals: below a second would flood the API, above a week
# would make a removed machine linger for ever.
_MIN_INTERVAL: Final = 1.0
_MAX_INTERVAL: Final = 7 * 86400.0


def parse_discovery(node: object, errors: list[str]) -> DiscoveryConfig:
    """The ``discovery:`` section. Pure."""
    v = Validator(errors)
    raw = v.mapping(node, "discovery", ("interval", "machine_types"))
    interval = _interval(v, raw.get("interval"), "discovery.interval", 3600.0)
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
    v = Validator(errors)
    raw = v.mapping(node, "machine_status", ("enabled", "interval", "timestamps"))
    enabled = v.boolean(raw.get("enabled"), "machine_status.enabled")
    interval = _interval(v, raw.get("interval"), "machine_status.interval", 300.0)
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
    return bool(Validator(errors).boolean(node, path))


def _interval(v: Validator, node: object, path: str, default: float) -> float:
    seconds = v.duration(node, path, minimum=_MIN_INTERVAL, maximum=_MAX_INTERVAL)
    return default if seconds is None else seconds
