"""The ``machine_status`` request kind: ``GET /v1/machines/{MachineID}/status`` per
machine, its reading and its series.

Lynx writes these timestamps without a zone (``"2026-05-14T22:17:02.877"``, with or
without fractional seconds); whether they are UTC or the machine's local time is
not documented. ``machine_status.timestamps`` says how to read them:

- ``utc``: as UTC;
- ``machine``: local time at the machine's ``MachineTimeZoneOffset`` (hours, from
  discovery); a machine whose offset is unknown is read as UTC;
- an IANA zone (``Europe/Berlin``): local time in that zone, DST included.

A timestamp that does carry a zone (``Z`` or an offset) is taken as written. A
timestamp more than 5 minutes in the future means the setting is probably wrong:
it is still published, and the reading lists it in ``skewed`` (the poller counts
``nayax_ev_poll_errors_total{reason="clock_skew"}`` and warns once per machine).
Values are read through the upstream boundary (exporter/lynx/upstream.py): a timestamp
before 2000 or more than a day ahead (.NET's ``DateTime.MinValue``, year 1, is how
some systems write "never") gives no sample and is counted as dropped, without
failing the poll. Null or missing fields give no sample; an unreadable field is a
``bad_payload`` problem and gives no sample either.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from exporter.config import Config
from exporter.kinds.base import (
    MACHINE_LABELS,
    Family,
    GetJson,
    Problem,
    Result,
    Sample,
    machine_labels,
)
from exporter.lynx.client import Answer
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.upstream import INT32_MAX, Dropped, Rejected, read_int, read_timestamp
from exporter.targets import MACHINE_STATUS, Target

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "MachineStatus",
    "MachineStatusKind",
    "parse_status",
    "zone_for",
]

CLOCK_SKEW_SECONDS: Final = 300.0
SKEW_WARNING: Final = "machine status timestamps lie in the future; check machine_status.timestamps"
_TIMESTAMP_FIELDS: Final = (
    ("last_keepalive", "LastKeepAliveDateTime"),
    ("last_transaction", "LastTransactionDateTime"),
    ("last_power_up", "LastPowerUpDateTime"),
    ("last_power_down", "LastPowerDownDateTime"),
)


@dataclass(frozen=True, slots=True)
class MachineStatus:
    last_keepalive: float | None = None  # UTC epoch seconds
    mqtt_connected: float | None = None  # 1.0 / 0.0
    last_transaction: float | None = None
    last_power_up: float | None = None
    last_power_down: float | None = None
    gprs_failures: float | None = None
    signal_rssi: float | None = None
    skewed: tuple[str, ...] = ()  # fields more than 5 min in the future
    problems: tuple[Problem, ...] = ()
    dropped: tuple[Dropped, ...] = ()  # timestamps out of range, read as absent

    @property
    def notices(self) -> tuple[Problem, ...]:
        """Timestamps in the future: ``clock_skew``, the target stays up."""
        if not self.skewed:
            return ()
        return (Problem("clock_skew", ",".join(self.skewed), SKEW_WARNING),)


def zone_for(convention: str, tz_offset_hours: float | None) -> tzinfo:
    """The zone zone-less timestamps are read in. Pure (ZoneInfo is cached)."""
    if convention == "utc":
        return UTC
    if convention == "machine":
        if tz_offset_hours is None or not math.isfinite(tz_offset_hours):
            return UTC
        return timezone(timedelta(hours=tz_offset_hours))
    return zoneinfo.ZoneInfo(convention)


def _number(doc: Mapping[str, object], field: str, problems: list[Problem]) -> float | None:
    value = read_int(doc.get(field), minimum=-INT32_MAX - 1, maximum=INT32_MAX)
    if isinstance(value, Rejected):
        problems.append(Problem("bad_payload", field, value.detail))
        return None
    return None if value is None else float(value)


def parse_status(payload: object, *, zone: tzinfo, now: float) -> MachineStatus:
    """Interpret one decoded ``MachineStatusInfo`` answer. Pure."""
    if not isinstance(payload, Mapping):
        raise BadPayloadError(f"expected a JSON object, got {type(payload).__name__}")
    problems: list[Problem] = []
    dropped: list[Dropped] = []
    stamps: dict[str, float | None] = {}
    skewed: list[str] = []
    for attr, field in _TIMESTAMP_FIELDS:
        epoch = read_timestamp(payload.get(field), zone, now)
        stamps[attr] = epoch if isinstance(epoch, float) else None
        if isinstance(epoch, Rejected):
            if epoch.reason == "timestamp_out_of_range":  # e.g. .NET's DateTime.MinValue
                dropped.append(Dropped(field, epoch.reason))
            else:
                problems.append(Problem("bad_payload", field, epoch.detail))
        elif epoch is not None and epoch - now > CLOCK_SKEW_SECONDS:
            skewed.append(field)
    mqtt = payload.get("MachineMQTTStatus")
    if mqtt is not None and not isinstance(mqtt, bool):
        problems.append(Problem("bad_payload", "MachineMQTTStatus", "not a boolean"))
        mqtt = None
    return MachineStatus(
        last_keepalive=stamps["last_keepalive"],
        mqtt_connected=None if mqtt is None else float(mqtt),
        last_transaction=stamps["last_transaction"],
        last_power_up=stamps["last_power_up"],
        last_power_down=stamps["last_power_down"],
        gprs_failures=_number(payload, "LastGPRSFailureCount", problems),
        signal_rssi=_number(payload, "LastReceptionLevel(RSSI)", problems),
        skewed=tuple(skewed),
        problems=tuple(problems),
        dropped=tuple(dropped),
    )


# --- the series ---------------------------------------------------------------------

_STATUS = "From GET /v1/machines/{MachineID}/status"
StatusValue = Callable[[MachineStatus], float | None]


def _timestamp(name: str, field: str, attr: str) -> tuple[Family, StatusValue]:
    family = Family(
        f"nayax_ev_machine_{name}_timestamp_seconds",
        f"{field} as Unix time (see machine_status.timestamps). {_STATUS}.",
        MACHINE_LABELS,
    )
    return family, lambda status: getattr(status, attr)


STATUS_SERIES: tuple[tuple[Family, StatusValue], ...] = (
    _timestamp("last_keepalive", "LastKeepAliveDateTime", "last_keepalive"),
    (
        Family(
            "nayax_ev_machine_mqtt_connected",
            f"1 if MachineMQTTStatus says the machine is connected over MQTT, else 0. {_STATUS}.",
            MACHINE_LABELS,
        ),
        lambda status: status.mqtt_connected,
    ),
    _timestamp("last_transaction", "LastTransactionDateTime", "last_transaction"),
    _timestamp("last_power_up", "LastPowerUpDateTime", "last_power_up"),
    _timestamp("last_power_down", "LastPowerDownDateTime", "last_power_down"),
    (
        Family(
            "nayax_ev_machine_gprs_failures",
            f"LastGPRSFailureCount: GPRS failures at the last connection attempt. {_STATUS}.",
            MACHINE_LABELS,
        ),
        lambda status: status.gprs_failures,
    ),
    (
        Family(
            "nayax_ev_machine_signal_rssi",
            f"LastReceptionLevel(RSSI): the last signal level reported. {_STATUS}.",
            MACHINE_LABELS,
        ),
        lambda status: status.signal_rssi,
    ),
)


def status_samples(target: Target, status: MachineStatus) -> Iterator[Sample]:
    """One sample per status family whose field was present. Pure."""
    labels = machine_labels(target)
    for family, value_of in STATUS_SERIES:
        value = value_of(status)
        if value is not None:
            yield Sample(family, labels, value)


# --- the kind ------------------------------------------------------------------------


@dataclass(frozen=True)
class MachineStatusKind:
    """``GET /v1/machines/{MachineID}/status`` for one machine."""

    name: str = MACHINE_STATUS
    families: tuple[Family, ...] = tuple(family for family, _ in STATUS_SERIES)

    def fetch(self, get_json: GetJson, target: Target, now: datetime) -> Answer:
        return get_json(f"/v1/machines/{target.machine_id}/status", {}, target.token)

    def parse(self, payload: object, target: Target, config: Config, now: float) -> MachineStatus:
        """Pure."""
        info = None if target.machine is None else target.machine.info
        offset = None if info is None else info.tz_offset_hours
        zone = zone_for(config.machine_status.timestamps, offset)
        return parse_status(payload, zone=zone, now=now)

    def samples(self, target: Target, reading: Result) -> Iterator[Sample]:
        """Pure."""
        assert isinstance(reading, MachineStatus)  # what this kind's parse returns
        return status_samples(target, reading)
