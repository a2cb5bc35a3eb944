"""Fault injection: every FaultKind observable over real HTTP, plus scoping rules."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from pathlib import Path

import pytest
import requests

from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.simulator.faults import MACHINE_NUMERIC_FIELDS, OPERATOR_FIELDS, FaultSet

ACTOR = 2001492652
OTHER = 2001492653
AUTH = {"Authorization": "Bearer sim-token"}
# A fixed past window keeps the machine figures identical between requests.
WINDOW = {"StartDate": "2024-03-01T00:00:00Z", "EndDate": "2024-03-03T00:00:00Z"}


def fetch(
    client: requests.Session,
    sim: SimulatorServer,
    actor: int = ACTOR,
    timeout: float = 5.0,
    **params: str,
) -> requests.Response:
    return client.get(
        f"{sim.url}/v1/actors/{actor}/evDashboard",
        params={**WINDOW, "TimePeriod": "2", **params},
        headers=AUTH,
        timeout=timeout,
    )


def numeric_values(doc: dict[str, object]) -> list[object]:
    op, md = doc["OperatorDashboard"], doc["MachineDashboard"]
    assert isinstance(op, dict) and isinstance(md, dict)
    return [op[k] for k in OPERATOR_FIELDS] + [md[k] for k in MACHINE_NUMERIC_FIELDS]


# -- the Fault value -------------------------------------------------------------------


def test_fault_json_round_trip() -> None:
    fault = Fault.from_json(
        {"kind": "status", "status": 503, "actor_id": ACTOR, "remaining": 2, "retry_after": "2"}
    )
    assert fault == Fault(
        FaultKind.STATUS, status=503, actor_id=ACTOR, remaining=2, retry_after="2"
    )
    assert Fault.from_json(fault.to_json()) == fault
    assert json.loads(json.dumps(fault.to_json()))["kind"] == "status"
    assert Fault.from_json({"kind": "hang", "machine": 942488501}).machine == "942488501"


@pytest.mark.parametrize(
    "data",
    [
        [],
        {},
        {"kind": "explode"},
        {"kind": "status", "status": "503"},
        {"kind": "status", "status": 42},
        {"kind": "status", "status": 204},
        {"kind": "status", "bogus": 1},
        {"kind": "hang", "seconds": -1},
        {"kind": "status", "remaining": 0},
        {"kind": "status", "probability": 2},
        {"kind": "status", "retry_after": "1\r\nX-Evil: 1"},
        {"kind": "status", "actor_id": "2001492652"},
    ],
)
def test_fault_json_rejects_garbage(data: object) -> None:
    with pytest.raises(ValueError):  # messages differ per case
        Fault.from_json(data)


def test_fault_set_scoping_and_countdown() -> None:
    faults = FaultSet()
    faults.add(Fault(FaultKind.NULLS, actor_id=OTHER))
    faults.add(Fault(FaultKind.HUGE, machine=""))
    faults.add(Fault(FaultKind.NAN, machine="EV-000-0001", remaining=2))
    m1 = frozenset({"942488502", "EV-000-0001"})
    m2 = frozenset({"942488503", "EV-000-0002"})
    assert faults.take(OTHER, m1) == Fault(FaultKind.NULLS, actor_id=OTHER)
    assert faults.take(ACTOR, frozenset()) == Fault(FaultKind.HUGE, machine="")
    assert faults.take(ACTOR, m2) is None
    assert faults.take(ACTOR, m1) is not None
    assert faults.active()[-1].remaining == 1
    assert faults.take(ACTOR, m1) is not None
    assert faults.take(ACTOR, m1) is None  # used up and removed
    assert [f.kind for f in faults.active()] == [FaultKind.NULLS, FaultKind.HUGE]
    faults.clear()
    assert faults.active() == []


def test_fault_set_probability_is_seeded() -> None:
    def pattern() -> list[bool]:
        faults = FaultSet(seed=3)
        faults.add(Fault(FaultKind.STATUS, probability=0.5))
        return [faults.take(ACTOR, frozenset()) is not None for _ in range(200)]

    first = pattern()
    assert first == pattern()
    assert 60 < sum(first) < 140


# -- every kind over HTTP --------------------------------------------------------------


def test_status_with_retry_after(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=429, retry_after="2"))
    resp = fetch(client, sim)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"
    assert resp.json()["errorKey"] == "TooManyRequests"
    sim.clear_faults()
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    sim.add_fault(Fault(FaultKind.STATUS, status=503, retry_after=date))
    resp = fetch(client, sim)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == date
    assert resp.json()["message"] == "Service Unavailable"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 502, 504])
def test_status_codes(sim: SimulatorServer, client: requests.Session, status: int) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=status))
    resp = fetch(client, sim)
    assert resp.status_code == status
    assert "Retry-After" not in resp.headers
    assert int(resp.headers["Content-Length"]) == len(resp.content) > 0
    assert sim.requests()[-1].status == status
    assert sim.requests()[-1].fault == "status"


def test_hang_times_out_client_but_not_others(
    sim: SimulatorServer, client: requests.Session
) -> None:
    sim.add_fault(Fault(FaultKind.HANG, seconds=1.5, machine="EV-000-0000"))
    outcome: list[BaseException] = []

    def hung() -> None:
        try:
            fetch(requests.Session(), sim, timeout=0.3, MachineNumber="EV-000-0000")
        except requests.Timeout as exc:
            outcome.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    time.sleep(0.05)  # the hung request is in flight now
    started = time.monotonic()
    assert fetch(client, sim).status_code == 200
    assert time.monotonic() - started < 0.25
    thread.join()
    assert len(outcome) == 1
    hung_record = next(r for r in sim.requests() if r.machine == "EV-000-0000")
    assert hung_record.fault == "hang"


def test_hang_answers_normally_afterwards(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.HANG, seconds=0.3, remaining=1))
    started = time.monotonic()
    resp = fetch(client, sim)
    assert resp.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert "OperatorDashboard" in resp.json()
    assert sim.requests()[-1].fault == "hang"
    assert sim.requests()[-1].status == 200


def test_stop_returns_promptly_while_hang_in_flight() -> None:
    sim = SimulatorServer(Fleet(FleetSpec()), strict=False)
    sim.start()
    sim.add_fault(Fault(FaultKind.HANG, seconds=30))
    errors: list[BaseException] = []

    def hung() -> None:
        try:
            requests.get(f"{sim.url}/v1/actors/{ACTOR}/evDashboard", headers=AUTH, timeout=10)
        except requests.RequestException as exc:
            errors.append(exc)

    thread = threading.Thread(target=hung)
    thread.start()
    deadline = time.monotonic() + 2
    while not sim.requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.requests(), "hung request never arrived"
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 1.0
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert len(errors) == 1  # the client saw the connection die, not an answer
    assert sim.requests()[0].status == 0


def test_reset_mid_body(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.RESET))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        fetch(client, sim).json()
    record = sim.requests()[-1]
    assert (record.status, record.fault) == (0, "reset")
    # The same session recovers on a fresh connection once the fault is gone.
    sim.clear_faults()
    assert fetch(client, sim).status_code == 200


def test_reset_sends_headers_then_part_of_the_body(sim: SimulatorServer) -> None:
    sim.add_fault(Fault(FaultKind.RESET))
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        conn.request("GET", f"/v1/actors/{ACTOR}/evDashboard", headers=AUTH)
        resp = conn.getresponse()
        assert resp.status == 200
        promised = int(resp.headers["Content-Length"])
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)) as info:
            resp.read()
        if isinstance(info.value, http.client.IncompleteRead):
            assert 0 < len(info.value.partial) < promised
    finally:
        conn.close()


def test_truncated_json(sim: SimulatorServer, client: requests.Session) -> None:
    full = fetch(client, sim).content
    sim.add_fault(Fault(FaultKind.TRUNCATED_JSON))
    resp = fetch(client, sim)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert int(resp.headers["Content-Length"]) == len(resp.content) == len(full) // 2
    assert full.startswith(resp.content)
    with pytest.raises(ValueError):
        json.loads(resp.content)


def test_html_200(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.HTML_200))
    resp = fetch(client, sim)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.lstrip().lower().startswith("<!doctype html>")
    with pytest.raises(ValueError):
        resp.json()


def test_json_array(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.JSON_ARRAY))
    body = fetch(client, sim).json()
    assert isinstance(body, list)


@pytest.mark.parametrize(
    ("kind", "missing", "present"),
    [
        (FaultKind.MISSING_OPERATOR, "OperatorDashboard", "MachineDashboard"),
        (FaultKind.MISSING_MACHINE, "MachineDashboard", "OperatorDashboard"),
    ],
)
def test_missing_blocks(
    sim: SimulatorServer, client: requests.Session, kind: FaultKind, missing: str, present: str
) -> None:
    sim.add_fault(Fault(kind))
    body = fetch(client, sim).json()
    assert missing not in body
    assert present in body


def test_nulls(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.NULLS))
    body = fetch(client, sim).json()
    assert numeric_values(body) == [None] * 9
    assert body["TimePeriod"] is None
    assert body["MachineDashboard"]["UnitOfMeasureSymbol"] == "kWh"


def test_numeric_strings(sim: SimulatorServer, client: requests.Session) -> None:
    normal = fetch(client, sim).json()
    sim.add_fault(Fault(FaultKind.NUMERIC_STRINGS))
    body = fetch(client, sim).json()
    values = numeric_values(body)
    assert all(isinstance(v, str) for v in values)
    md_strings = [float(str(v)) for v in values[4:]]
    assert md_strings == [float(str(v)) for v in numeric_values(normal)[4:]]
    assert body["TimePeriod"] == "2"


def test_negative(sim: SimulatorServer, client: requests.Session) -> None:
    normal = fetch(client, sim).json()
    sim.add_fault(Fault(FaultKind.NEGATIVE))
    body = fetch(client, sim).json()
    for value, original in zip(numeric_values(body), numeric_values(normal), strict=True):
        assert isinstance(value, int | float) and isinstance(original, int | float)
        assert value < 0
        assert value == (-original if original else -1)
    assert body["TimePeriod"] == -2


def test_huge(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.HUGE))
    body = fetch(client, sim).json()
    assert numeric_values(body) == [1e308] * 9


def test_nan(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.NAN))
    resp = fetch(client, sim)
    for token in ("NaN", "Infinity", "-Infinity"):
        assert token in resp.text
    values = numeric_values(resp.json())  # Python's json accepts the bare tokens
    assert all(isinstance(v, float) and not math.isfinite(v) for v in values)


def test_unknown_unit(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.UNKNOWN_UNIT))
    md = fetch(client, sim).json()["MachineDashboard"]
    assert md["UnitOfMeasureSymbol"] == "furlongs"
    assert md["UnitOfMeasure"] == "Furlong"


def test_patch_merges_fields_into_the_answer_and_into_chosen_records(
    sim: SimulatorServer, client: requests.Session
) -> None:
    patch = {"MachineDashboard": {"NumberOfChargingSessions": "1_0"}, "Extra": "bad\ud800"}
    sim.add_fault(Fault.from_json({"kind": "patch", "patch": patch, "endpoint": "dashboard"}))
    body = fetch(client, sim).json()
    assert body["MachineDashboard"]["NumberOfChargingSessions"] == "1_0"
    assert "TotalEnergyConsumption" in body["MachineDashboard"]  # merged, not replaced
    assert body["Extra"] == "bad\ud800"  # sent as JSON's \ud800 escape
    first = sim.fleet.machines(ACTOR)[0].id
    sim.add_fault(
        Fault(FaultKind.PATCH, endpoint="machines", records={str(first): {"MachineID": "²"}})
    )
    listed = client.get(
        f"{sim.url}/v1/machines", params={"ActorID": str(ACTOR)}, headers=AUTH, timeout=5
    ).json()
    assert [r["MachineID"] for r in listed][:2] == ["²", sim.fleet.machines(ACTOR)[1].id]
    with pytest.raises(ValueError, match="patch or records"):
        Fault(FaultKind.PATCH)
    with pytest.raises(ValueError, match="must map MachineIDs"):
        Fault.from_json({"kind": "patch", "records": {"1": 2}})


def test_extra_fields(sim: SimulatorServer, client: requests.Session) -> None:
    normal = fetch(client, sim).json()
    sim.add_fault(Fault(FaultKind.EXTRA_FIELDS))
    body = fetch(client, sim).json()
    assert set(body) > set(normal)
    for block in ("OperatorDashboard", "MachineDashboard"):
        assert set(body[block]) > set(normal[block])
        for key, value in normal[block].items():
            assert body[block][key] == value


def test_every_kind_is_covered() -> None:
    # Guard: a new FaultKind needs a test in this module.
    source = Path(__file__).read_text(encoding="utf-8")
    for kind in FaultKind:
        assert f"FaultKind.{kind.name}" in source, kind


# -- scoping and lifetime over HTTP ----------------------------------------------------


def test_remaining_counts_down_then_disappears(
    sim: SimulatorServer, client: requests.Session
) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=503, remaining=2))
    codes = [fetch(client, sim).status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    assert sim.faults() == []
    assert [r.fault for r in sim.requests()] == ["status", "status", None, None]


def test_actor_scope(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=500, actor_id=OTHER))
    assert fetch(client, sim, ACTOR).status_code == 200
    assert fetch(client, sim, OTHER).status_code == 500


def test_machine_scope(sim: SimulatorServer, client: requests.Session) -> None:
    target = sim.fleet.machines(ACTOR)[3]
    sim.add_fault(Fault(FaultKind.STATUS, status=502, machine=target.number))
    assert fetch(client, sim).status_code == 200  # no machine filter
    assert fetch(client, sim, MachineNumber=target.number).status_code == 502
    # Matches the same machine when it is asked for by id.
    assert fetch(client, sim, MachineID=str(target.id)).status_code == 502
    assert fetch(client, sim, MachineNumber="EV-000-0004").status_code == 200
    sim.clear_faults()
    sim.add_fault(Fault(FaultKind.STATUS, status=504, machine=str(target.id)))
    assert fetch(client, sim, MachineNumber=target.number).status_code == 504


def test_machine_empty_scope_means_actor_wide_only(
    sim: SimulatorServer, client: requests.Session
) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=500, machine=""))
    assert fetch(client, sim).status_code == 500
    assert fetch(client, sim, MachineNumber="EV-000-0001").status_code == 200


def test_faults_only_hit_requests_that_would_succeed(
    sim: SimulatorServer, client: requests.Session
) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=503, remaining=1))
    assert fetch(client, sim, actor=999).status_code == 404
    unauthorised = client.get(f"{sim.url}/v1/actors/{ACTOR}/evDashboard", timeout=5)
    assert unauthorised.status_code == 401
    assert fetch(client, sim).status_code == 503


def test_first_matching_fault_wins(sim: SimulatorServer, client: requests.Session) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=500, remaining=1))
    sim.add_fault(Fault(FaultKind.STATUS, status=503))
    assert [fetch(client, sim).status_code for _ in range(3)] == [500, 503, 503]


def test_probability_applies_some_of_the_time(
    sim: SimulatorServer, client: requests.Session
) -> None:
    sim.add_fault(Fault(FaultKind.STATUS, status=500, probability=0.5))
    codes = [fetch(client, sim).status_code for _ in range(60)]
    assert 10 < codes.count(500) < 50
    assert codes.count(500) + codes.count(200) == 60


def test_control_faults_endpoint(sim: SimulatorServer, client: requests.Session) -> None:
    spec = {"kind": "status", "status": 503, "actor_id": ACTOR, "remaining": 2}
    resp = client.post(f"{sim.url}/_sim/faults", json=spec, timeout=5)
    assert resp.status_code == 201
    assert resp.json()["kind"] == "status"
    listed = client.get(f"{sim.url}/_sim/faults", timeout=5).json()
    assert listed == [Fault.from_json(spec).to_json()]
    assert fetch(client, sim).status_code == 503
    assert client.get(f"{sim.url}/_sim/faults", timeout=5).json()[0]["remaining"] == 1
    assert fetch(client, sim, OTHER).status_code == 200
    assert client.delete(f"{sim.url}/_sim/faults", timeout=5).status_code == 200
    assert fetch(client, sim).status_code == 200
    assert sim.faults() == []
    bad = client.post(f"{sim.url}/_sim/faults", json={"kind": "meteor"}, timeout=5)
    assert bad.status_code == 400
    assert "meteor" in bad.json()["error"]


def test_fault_json_reports_every_problem_with_a_hint() -> None:
    """The config files' validator: every problem at once, each with its key."""
    with pytest.raises(ValueError) as raised:
        Fault.from_json({"kind": "status", "statsu": 503, "seconds": "x", "hang_at": "end"})
    message = str(raised.value)
    assert "statsu: unknown key (did you mean 'status'?)" in message
    assert "seconds: must be a number" in message
    assert "hang_at: must be one of start, body, trickle" in message
