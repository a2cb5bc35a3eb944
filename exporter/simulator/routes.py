"""What the simulator answers on the vendor's API: evDashboard, the machine list and
status (:mod:`exporter.simulator.machines`) and the token exchange.

The HTTP handler in :mod:`exporter.simulator.server` does transport (recording,
latency, faults on the wire); the functions here decide the answer to a request,
reading the server through :class:`~exporter.simulator.context.Simulated`. Every
error they answer has the vendor's shape (:mod:`exporter.simulator.vendor`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import unquote

from exporter.simulator.context import ApiRequest, Payload, Simulated
from exporter.simulator.fleet import Machine, resolve_window
from exporter.simulator.machines import LIST_PATH, STATUS_PATH, machine_list, machine_status
from exporter.simulator.replies import (
    INT32,
    INT64,
    BadRequest,
    Reply,
    parse_datetime,
    parse_int,
)
from exporter.simulator.vendor import (
    ISSUE_PATH,
    dashboard_rule,
    denial,
    method_not_allowed,
    vendor_error,
)

__all__ = ["DASHBOARD_PATH", "Matched", "dashboard", "find", "issue_access_token", "not_found"]

# Optional "/operational" prefix so the production-style base_url also works.
DASHBOARD_PATH: Final = re.compile(r"^(?:/operational)?/v1/actors/([^/]*)/evdashboard/?$", re.I)


@dataclass(frozen=True)
class Matched:
    """A request path matched to its route, with what the request log records."""

    answer: Callable[[Simulated, ApiRequest], Payload]
    actor_id: int | None
    machine: str | None


def not_found() -> Reply:
    """The answer to a path no route serves."""
    return vendor_error(404, "The requested resource was not found")


def issue_access_token(sim: Simulated, request: ApiRequest) -> Payload:
    """``POST /v1/issue-access-token`` (:class:`~exporter.simulator.vendor.TokenIssuer`)."""
    if request.method != "POST":
        return method_not_allowed("POST")
    return sim.issuer.issue(request.authorization)


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

        def answer(sim: Simulated, request: ApiRequest) -> Payload:
            return dashboard(sim, request, actor_id=actor_id)

        return Matched(answer, actor_id, machine)
    if ISSUE_PATH.match(path):
        return Matched(issue_access_token, None, None)
    if LIST_PATH.match(path):
        return Matched(machine_list, _opt_int(query.get("actorid", ""), INT64), None)
    match = STATUS_PATH.match(path)
    if match is not None:
        raw_id = unquote(match.group(1))

        def status(sim: Simulated, request: ApiRequest) -> Payload:
            return machine_status(sim, request, raw_id)

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


def dashboard(sim: Simulated, request: ApiRequest, *, actor_id: int | None) -> Payload:
    """Validate an evDashboard request: an error reply, or the payload plus its fault.

    Order: method, auth (401/403 before any 400/404), parameters, existence, faults.
    Faults only hit requests that would otherwise succeed.
    """
    if request.method != "GET":
        return method_not_allowed("GET")
    denied = denial(sim.authorize(request.authorization, actor_id))
    if denied is not None:
        return denied
    if actor_id is None:
        return vendor_error(400, "ActorID must be an int64")
    rejected = dashboard_rule(request.query, sim.time_periods) if sim.strict else None
    if rejected is not None:
        return rejected
    now = datetime.fromtimestamp(request.wall, UTC)
    try:
        start, end, machine_id, number, period = _window(request.query, now)
    except BadRequest as exc:
        return vendor_error(400, str(exc))
    fleet = sim.fleet
    if actor_id not in fleet.actor_ids():
        return vendor_error(404, f"Actor {actor_id} was not found")
    machine: Machine | None = None
    if machine_id is not None or number is not None:
        machine = fleet.find_machine(actor_id, machine_id, number)
        if machine is None:
            return vendor_error(404, f"Machine was not found for actor {actor_id}")
    payload = fleet.dashboard(
        actor_id, start=start, end=end, machine=machine, time_period=period, now=now
    )
    keys = frozenset() if machine is None else frozenset((str(machine.id), machine.number))
    return payload, sim.take_fault(actor_id, keys, "dashboard")
