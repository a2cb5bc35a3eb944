"""What the simulator answers: the evDashboard route and the /_sim/ control API.

The HTTP handler in :mod:`exporter.simulator.server` does transport (recording,
latency, faults on the wire); the functions here decide the answer to a request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from exporter.simulator import machines, vendor
from exporter.simulator.faults import Fault
from exporter.simulator.fleet import Machine, resolve_window
from exporter.simulator.replies import (
    INT32,
    INT64,
    BadRequest,
    Reply,
    authorize,
    error,
    json_bytes,
    parse_datetime,
    parse_int,
)

if TYPE_CHECKING:
    from exporter.simulator.server import SimulatorServer

__all__ = ["DASHBOARD_PATH", "ApiRequest", "Matched", "Payload", "control", "dashboard", "find"]

# Optional "/operational" prefix so the production-style base_url also works.
DASHBOARD_PATH: Final = re.compile(r"^(?:/operational)?/v1/actors/([^/]*)/evdashboard/?$", re.I)

# A route's verdict: an error reply, or the JSON document plus the fault to apply.
Payload = Reply | tuple[object, Fault | None]


@dataclass(frozen=True)
class ApiRequest:
    method: str
    query: Mapping[str, str]  # keys lower-cased: .NET binds them case-insensitively
    authorization: str | None
    wall: float


@dataclass(frozen=True)
class Matched:
    """A request path matched to its route, with what the request log records."""

    answer: Callable[[SimulatorServer, ApiRequest], Payload]
    actor_id: int | None
    machine: str | None


def _opt_int(text: str, bounds: tuple[int, int]) -> int | None:
    try:
        return parse_int(text, bounds, "id")
    except BadRequest:
        return None


def find(path: str, query: Mapping[str, str]) -> Matched | None:
    """The route for an API path (None = 404). Pure."""
    match = DASHBOARD_PATH.match(path)
    if match is not None:
        actor_id = _opt_int(unquote(match.group(1)), INT64)
        machine = query.get("machineid") or query.get("machinenumber") or None

        def answer(sim: SimulatorServer, request: ApiRequest) -> Payload:
            return dashboard(sim, request, actor_id=actor_id)

        return Matched(answer, actor_id, machine)
    if vendor.ISSUE_PATH.match(path):
        return Matched(vendor.issue_access_token, None, None)
    if machines.LIST_PATH.match(path):
        return Matched(machines.machine_list, _opt_int(query.get("actorid", ""), INT64), None)
    match = machines.STATUS_PATH.match(path)
    if match is not None:
        raw_id = unquote(match.group(1))

        def status(sim: SimulatorServer, request: ApiRequest) -> Payload:
            return machines.machine_status(sim, request, raw_id)

        return Matched(status, None, raw_id)
    return None


def _window(
    query: Mapping[str, str], now: datetime
) -> tuple[datetime, datetime, int | None, str | None, int | None]:
    """(start, end, MachineID, MachineNumber, TimePeriod) of an evDashboard request."""
    raw_start = query.get("startdate") or None
    raw_end = query.get("enddate") or None
    start = None if raw_start is None else parse_datetime(raw_start, "StartDate")
    end = None if raw_end is None else parse_datetime(raw_end, "EndDate")
    raw_id = query.get("machineid") or None
    number = query.get("machinenumber") or None
    machine_id = None if raw_id is None else parse_int(raw_id, INT64, "MachineID")
    if raw_id is not None and number is not None:
        raise BadRequest("give MachineID or MachineNumber, not both")
    raw_period = query.get("timeperiod") or None
    period = None if raw_period is None else parse_int(raw_period, INT32, "TimePeriod")
    if start is not None and end is not None and start > end:
        raise BadRequest("StartDate is after EndDate")
    start, end = resolve_window(start, end, period, now)
    if start > end:  # only one date given and it lies after the defaulted other
        raise BadRequest("StartDate is after EndDate")
    return start, end, machine_id, number, period


def dashboard(sim: SimulatorServer, request: ApiRequest, *, actor_id: int | None) -> Payload:
    """Validate an evDashboard request: an error reply, or the payload plus its fault.

    Order: method, auth (401/403 before any 400/404), parameters, existence, faults.
    Faults only hit requests that would otherwise succeed.
    """
    if request.method != "GET":
        return error(405, "method not allowed", ("Allow", "GET"))
    denied = authorize(sim, request.authorization, actor_id)
    if denied is not None:
        return denied
    if actor_id is None:
        return error(400, "ActorID must be an int64")
    rejected = vendor.dashboard_rule(request.query, sim.time_periods) if sim.strict else None
    if rejected is not None:
        return rejected
    now = datetime.fromtimestamp(request.wall, UTC)
    try:
        start, end, machine_id, number, period = _window(request.query, now)
    except BadRequest as exc:
        return error(400, str(exc))
    fleet = sim.fleet
    if actor_id not in fleet.actor_ids():
        return error(404, f"actor {actor_id} not found")
    machine: Machine | None = None
    if machine_id is not None or number is not None:
        machine = fleet.find_machine(actor_id, machine_id, number)
        if machine is None:
            return error(404, "machine not found for this actor")
    payload = fleet.dashboard(
        actor_id, start=start, end=end, machine=machine, time_period=period, now=now
    )
    keys = frozenset() if machine is None else frozenset((str(machine.id), machine.number))
    return payload, sim._faults.take(actor_id, keys)


def _ok(doc: object = None, status: int = 200) -> Reply:
    return Reply(status, json_bytes({"ok": True} if doc is None else doc))


def _silence(sim: SimulatorServer, doc: object) -> Reply:
    if not isinstance(doc, dict):
        raise ValueError("body must be an object")
    actor, count = doc.get("actor_id"), doc.get("count")
    if not isinstance(actor, int) or not isinstance(count, int):
        raise ValueError("actor_id and count must be integers")
    since = doc.get("since_seconds", 7200.0)
    if not isinstance(since, int | float) or isinstance(since, bool):
        raise ValueError("since_seconds must be a number")
    try:
        sim.fleet.silence(actor, count, float(since))
    except KeyError:
        return error(404, f"actor {actor} not found")
    return _ok()


def _latency(sim: SimulatorServer, doc: object) -> Reply:
    seconds = doc.get("seconds") if isinstance(doc, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise ValueError("seconds must be a number")
    if not seconds >= 0:
        raise ValueError("seconds must be >= 0")
    sim.latency = float(seconds)
    return _ok({"ok": True, "seconds": sim.latency})


def _route(sim: SimulatorServer, route: tuple[str, str], doc: object) -> Reply | None:
    if route == ("POST", "/_sim/faults"):
        fault = Fault.from_json(doc)
        sim.add_fault(fault)
        return _ok(fault.to_json(), 201)
    if route == ("GET", "/_sim/faults"):
        return _ok([f.to_json() for f in sim.faults()])
    if route == ("DELETE", "/_sim/faults"):
        sim.clear_faults()
        return _ok()
    if route == ("POST", "/_sim/silence"):
        return _silence(sim, doc)
    if route == ("DELETE", "/_sim/silence"):
        sim.fleet.unsilence()
        return _ok()
    if route == ("GET", "/_sim/requests"):
        return _ok([log_entry for log_entry in sim._log_entries()])
    if route == ("DELETE", "/_sim/requests"):
        sim.clear_requests()
        return _ok()
    if route == ("POST", "/_sim/latency"):
        return _latency(sim, doc)
    if route == ("POST", "/_sim/timestamps"):
        convention = doc.get("convention") if isinstance(doc, dict) else None
        if convention not in machines.TIMESTAMP_CONVENTIONS:
            raise ValueError(f"convention must be one of {machines.TIMESTAMP_CONVENTIONS}")
        sim.timestamps = str(convention)
        return _ok({"ok": True, "convention": sim.timestamps})
    if route == ("GET", "/_sim/fleet"):
        return _ok(fleet_doc(sim))
    return None


def control(sim: SimulatorServer, method: str, path: str, body: bytes) -> Reply:
    """The /_sim/ control API (not authenticated, not recorded)."""
    try:
        doc: object = json.loads(body) if body.strip() else None
    except ValueError:
        return error(400, "body is not JSON")
    try:
        reply = _route(sim, (method, path.rstrip("/")), doc)
    except ValueError as exc:
        return error(400, str(exc))
    return error(404, "not found") if reply is None else reply


def fleet_doc(sim: SimulatorServer) -> dict[str, object]:
    fleet = sim.fleet
    return {
        "actors": [
            {
                "id": actor,
                "machines": [
                    {"id": m.id, "number": m.number, "name": m.name} for m in fleet.machines(actor)
                ],
            }
            for actor in fleet.actor_ids()
        ]
    }
