"""The simulator's ``GET /v1/machines`` and ``GET /v1/machines/{MachineID}/status``.

A machine's status agrees with evDashboard: the EV machines the operator counts call
silent at ``now`` (randomly silent in this time bucket, or forced through
:meth:`Fleet.silence`) have an old keep-alive and no MQTT connection; the others
sent a keep-alive within the last minute. Timestamps carry no zone, as the vendor's
recorded answers (its document only says ``date-time``); the convention (``utc`` or
``machine``: local time at ``MachineTimeZoneOffset``) is the server's setting. Some
machines send fractional seconds, others none. Records have the document's field
types: ``GeoCountry`` an int32 id, ``MachineTypeID`` a code of its enum.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from exporter.simulator.context import ApiRequest, Payload, Simulated
from exporter.simulator.fleet import Fleet, Machine
from exporter.simulator.history import uniform
from exporter.simulator.replies import INT32, INT64, BadRequest, parse_int
from exporter.simulator.vendor import denial, method_not_allowed, vendor_error

__all__ = [
    "LIST_PATH",
    "STATUS_PATH",
    "TIMESTAMP_CONVENTIONS",
    "format_timestamp",
    "machine_info",
    "machine_list",
    "machine_status",
    "status_document",
]

LIST_PATH: Final = re.compile(r"^(?:/operational)?/v1/machines/?$", re.I)
STATUS_PATH: Final = re.compile(r"^(?:/operational)?/v1/machines/([^/]*)/status/?$", re.I)
TIMESTAMP_CONVENTIONS: Final = ("utc", "machine")
DEFAULT_RESULTS_LIMIT: Final = 100


def format_timestamp(epoch: float | None, machine: Machine, convention: str) -> str | None:
    """A zone-less ISO timestamp as Lynx writes them. Pure.

    ``machine`` convention: the machine's local time (UTC + MachineTimeZoneOffset h).
    Machines with an odd id get milliseconds ("...02.877"), the others none.
    """
    if epoch is None:
        return None
    when = datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
    if convention == "machine":
        when += timedelta(hours=machine.tz_offset_hours)
    if machine.id % 2:
        return when.isoformat(timespec="milliseconds")
    return when.isoformat(timespec="seconds")


def machine_info(machine: Machine) -> dict[str, object]:
    """One ``MachineInfo`` record of the machine list. Pure."""
    return {
        "MachineID": machine.id,
        "MachineName": machine.name,
        "MachineNumber": machine.number,
        "ActorID": machine.actor_id,
        "OperatorActorID": machine.actor_id,
        "MachineTypeID": machine.machine_type,
        "MachineStatusBit": 1 if machine.has_device else 0,
        "GeoCity": machine.city,
        "GeoCountry": machine.country,
        "GeoAddress": None,
        "GeoZipCode": None,
        "GeoLatitude": machine.latitude,
        "GeoLongitude": machine.longitude,
        "MachineTimeZoneOffset": machine.tz_offset_hours,
        "SerialNumber": f"SN{machine.id}",
        "DeviceSerialNumber": f"DV{machine.id}" if machine.has_device else None,
        "LastUpdated": "2026-01-05T08:00:00",
    }


def _keepalive(fleet: Fleet, machine: Machine, now: float) -> tuple[float, bool]:
    """(epoch of the last keep-alive, silent?) of a machine with a device at ``now``."""
    seed, period = fleet.spec.seed, fleet.spec.silence_period_s
    bucket = math.floor(now / period)
    random_silent, forced, _busy = fleet.silence_state(
        machine.actor_id, datetime.fromtimestamp(now, UTC)
    )
    if machine.id in forced:
        since = fleet.forced_since(machine.actor_id)
        return (now - 7200.0 if since is None else since), True
    silent = machine.id in random_silent or (
        not machine.ev
        and uniform(seed, "silent", machine.id, bucket) < fleet.spec.silent_probability
    )
    if silent:  # silent since before this bucket: 1 h to 1 day before it began
        hours = 1.0 + 23.0 * uniform(seed, "gone", machine.id, bucket)
        return bucket * period - hours * 3600.0, True
    return now - 60.0 * uniform(seed, "alive", machine.id, math.floor(now / 30.0)), False


def status_document(fleet: Fleet, machine: Machine, now: float, convention: str) -> object:
    """The ``MachineStatusInfo`` answer for one machine at ``now``. Pure given the fleet."""
    seed = fleet.spec.seed
    stamp: dict[str, float | None] = dict.fromkeys(
        ("keepalive", "transaction", "power_up", "power_down", "changed"), None
    )
    mqtt, gprs, rssi = False, None, None
    if machine.has_device:
        keepalive, silent = _keepalive(fleet, machine, now)
        u = uniform(seed, "tx", machine.id, math.floor(now / 3600.0))
        stamp["keepalive"] = keepalive
        stamp["transaction"] = keepalive - 6 * 3600.0 * u if silent else now - 3600.0 * u
        power_up = keepalive - 86400.0 * (1 + 30 * uniform(seed, "up", machine.id))
        stamp["power_up"] = power_up
        stamp["power_down"] = keepalive + 5.0 if silent else power_up - 30.0
        stamp["changed"] = keepalive
        mqtt = not silent
        gprs = int(4 * uniform(seed, "gprs", machine.id))
        rssi = -110 + int(60 * uniform(seed, "rssi", machine.id))

    def fmt(key: str) -> str | None:
        return format_timestamp(stamp[key], machine, convention)

    return {
        "MachineID": machine.id,
        "ActorID": machine.actor_id,
        "LastKeepAliveDateTime": fmt("keepalive"),
        "MachineMQTTStatus": mqtt,
        "LastTransactionDateTime": fmt("transaction"),
        "LastCashlessSaleDateTime": fmt("transaction"),
        "LastPowerUpDateTime": fmt("power_up"),
        "LastPowerDownDateTime": fmt("power_down"),
        "MachineStatusUpdateDateTime": fmt("changed"),
        "LastGPRSFailureCount": gprs,
        "LastReceptionLevel(RSSI)": rssi,
        "ReaderStateErrorDateTime": None,
        "ReaderStateEnableDateTime": fmt("power_up"),
        "Machine24HEventCount": None if not machine.has_device else int(mqtt) * 288,
        "DeviceLastIPAddress": None if not machine.has_device else "10.20.0.7",
        "LastCashCollectionDateTime(UTC)": None,
    }


def _paging(query: Mapping[str, str]) -> tuple[int, int]:
    raw_limit = query.get("resultslimit") or None
    raw_offset = query.get("resultsoffset") or None
    limit = DEFAULT_RESULTS_LIMIT
    if raw_limit is not None:
        limit = parse_int(raw_limit, INT32, "ResultsLimit")
    offset = 0 if raw_offset is None else parse_int(raw_offset, INT32, "ResultsOffset")
    if limit < 1 or offset < 0:
        raise BadRequest("ResultsLimit must be >= 1 and ResultsOffset >= 0")
    return limit, offset


def _visible_actors(sim: Simulated, authorization: str | None) -> list[int]:
    return [a for a in sim.fleet.actor_ids() if sim.authorize(authorization, a) == 0]


def machine_list(sim: Simulated, request: ApiRequest) -> Payload:
    """``GET /v1/machines``: filters ActorID, MachineID, MachineName; paging with a
    server-side cap (``sim.page_cap``) below large ResultsLimit values."""
    query = request.query
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        raw_actor = query.get("actorid") or None
        actor_id = None if raw_actor is None else parse_int(raw_actor, INT64, "ActorID")
        raw_id = query.get("machineid") or None
        machine_id = None if raw_id is None else parse_int(raw_id, INT64, "MachineID")
        limit, offset = _paging(query)
    except BadRequest as exc:
        denied = denial(sim.authorize(request.authorization, None))
        return denied if denied is not None else vendor_error(400, str(exc))
    denied = denial(sim.authorize(request.authorization, actor_id))
    if denied is not None:
        return denied
    actors = [actor_id] if actor_id is not None else _visible_actors(sim, request.authorization)
    name = query.get("machinename") or None
    found = [
        m
        for a in actors
        for m in sim.fleet.listed_machines(a)
        if (machine_id is None or m.id == machine_id) and (name is None or m.name == name)
    ]
    page = found[offset : offset + min(limit, sim.page_cap)]
    fault = sim.take_fault(-1 if actor_id is None else actor_id, frozenset(), "machines")
    return [machine_info(m) for m in page], fault


def machine_status(sim: Simulated, request: ApiRequest, raw_id: str) -> Payload:
    """``GET /v1/machines/{MachineID}/status``: 401/403, then 400, then 404."""
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        machine_id: int | None = parse_int(raw_id, INT64, "MachineID")
    except BadRequest:
        machine_id = None
    machine = None if machine_id is None else sim.fleet.machine_by_id(machine_id)
    owner = None if machine is None else machine.actor_id
    denied = denial(sim.authorize(request.authorization, owner))
    if denied is not None:
        return denied
    if machine_id is None:
        return vendor_error(400, f"MachineID:{raw_id[:32]} is not a valid int64")
    if machine is None:
        return vendor_error(404, f"Machine {machine_id} was not found")
    doc = status_document(sim.fleet, machine, request.wall, sim.timestamps)
    keys = frozenset((str(machine.id), machine.number))
    return doc, sim.take_fault(machine.actor_id, keys, "status")
