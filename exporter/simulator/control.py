"""The simulator's own control API (``/_sim/``): faults, silence, latency,
timestamps, the clock, the request log and the fleet, for tests and the demo.

Not authenticated, not recorded; its errors are ``{"error": ...}``
(:func:`~exporter.simulator.replies.sim_error`), not the vendor's shape: no vendor
answer comes from here.
"""

from __future__ import annotations

import json

from exporter.simulator.context import Steered
from exporter.simulator.faults import Fault
from exporter.simulator.machines import TIMESTAMP_CONVENTIONS
from exporter.simulator.replies import Reply, json_bytes, sim_error

__all__ = ["control"]


def _ok(doc: object = None, status: int = 200) -> Reply:
    return Reply(status, json_bytes({"ok": True} if doc is None else doc))


def _silence(sim: Steered, doc: object) -> Reply:
    if not isinstance(doc, dict):
        raise ValueError("body must be an object")
    actor, count = doc.get("actor_id"), doc.get("count")
    if not isinstance(actor, int) or not isinstance(count, int):
        raise ValueError("actor_id and count must be integers")
    since = doc.get("since_seconds", 7200.0)
    if not isinstance(since, int | float) or isinstance(since, bool):
        raise ValueError("since_seconds must be a number")
    try:
        sim.fleet.silence(actor, count, float(since), now=sim.clock.now())
    except KeyError:
        return sim_error(404, f"actor {actor} not found")
    return _ok()


def _latency(sim: Steered, doc: object) -> Reply:
    seconds = doc.get("seconds") if isinstance(doc, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise ValueError("seconds must be a number")
    if not seconds >= 0:
        raise ValueError("seconds must be >= 0")
    sim.latency = float(seconds)
    return _ok({"ok": True, "seconds": sim.latency})


def _number(doc: dict[str, object], key: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{key} must be a number")
    return float(value)


def _clock(sim: Steered, doc: object) -> Reply:
    """``{"now": <Unix seconds>, "rate": <simulated seconds per second, default 1>}``."""
    if not isinstance(doc, dict):
        raise ValueError("body must be an object")
    sim.clock.set(_number(doc, "now"), _number(doc, "rate", 1.0))
    return _clock_doc(sim)


def _clock_doc(sim: Steered) -> Reply:
    clock = sim.clock
    return _ok({"now": clock.now(), "rate": clock.rate, "set": clock.is_set})


def _route(sim: Steered, route: tuple[str, str], doc: object) -> Reply | None:
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
        return _ok(sim.request_log())
    if route == ("DELETE", "/_sim/requests"):
        sim.clear_requests()
        return _ok()
    if route == ("POST", "/_sim/latency"):
        return _latency(sim, doc)
    if route == ("POST", "/_sim/timestamps"):
        convention = doc.get("convention") if isinstance(doc, dict) else None
        if convention not in TIMESTAMP_CONVENTIONS:
            raise ValueError(f"convention must be one of {TIMESTAMP_CONVENTIONS}")
        sim.timestamps = str(convention)
        return _ok({"ok": True, "convention": sim.timestamps})
    if route == ("POST", "/_sim/clock"):
        return _clock(sim, doc)
    if route == ("GET", "/_sim/clock"):
        return _clock_doc(sim)
    if route == ("DELETE", "/_sim/clock"):
        sim.clock.reset()
        return _clock_doc(sim)
    if route == ("GET", "/_sim/fleet"):
        return _ok(_fleet_doc(sim))
    return None


def control(sim: Steered, method: str, path: str, body: bytes) -> Reply:
    """The /_sim/ control API (not authenticated, not recorded)."""
    try:
        doc: object = json.loads(body) if body.strip() else None
    except ValueError:
        return sim_error(400, "body is not JSON")
    try:
        reply = _route(sim, (method, path.rstrip("/")), doc)
    except ValueError as exc:
        return sim_error(400, str(exc))
    return sim_error(404, "not found") if reply is None else reply


def _fleet_doc(sim: Steered) -> dict[str, object]:
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
