"""The simulator's /v1/machines and /v1/machines/{id}/status, over real loopback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from exporter.simulator.fleet import ELECTRICITY_TYPE, EV_CHARGER_TYPE, EV_TYPES, VENDING_TYPE
from exporter.simulator.machines import format_timestamp

ACTOR = 2001492652
OTHER = 2001492653
AUTH = {"Authorization": "Bearer sim-token"}


def listing(
    client: requests.Session, sim: SimulatorServer, **params: int | str
) -> requests.Response:
    return client.get(f"{sim.url}/v1/machines", params=params, headers=AUTH, timeout=5)


def status(client: requests.Session, sim: SimulatorServer, machine: object) -> requests.Response:
    return client.get(f"{sim.url}/v1/machines/{machine}/status", headers=AUTH, timeout=5)


def utc_of(text: str, offset_hours: float = 0.0) -> float:
    naive = datetime.fromisoformat(text)
    assert naive.tzinfo is None  # zone-less, as upstream
    return (naive.replace(tzinfo=UTC) - timedelta(hours=offset_hours)).timestamp()


def test_list_filters_by_actor_and_has_ev_and_other_kinds(
    sim: SimulatorServer, client: requests.Session
) -> None:
    doc = listing(client, sim, ActorID=ACTOR, ResultsLimit=1000).json()
    assert {m["ActorID"] for m in doc} == {ACTOR}
    assert len(doc) == 12  # 10 EV + 2 other kinds
    kinds = [m["MachineTypeID"] for m in doc]
    assert {EV_CHARGER_TYPE, ELECTRICITY_TYPE, VENDING_TYPE} <= set(kinds)
    first = doc[0]
    assert first["MachineName"] and first["MachineNumber"] and first["GeoCity"]
    assert isinstance(first["GeoLatitude"], float)
    assert isinstance(first["MachineTimeZoneOffset"], float)
    other = listing(client, sim, ActorID=OTHER).json()
    assert {m["ActorID"] for m in other} == {OTHER}


def test_paging_caps_large_limits_and_ends_with_an_empty_page(client: requests.Session) -> None:
    with SimulatorServer(Fleet(FleetSpec(actors=1, machines_per_actor=8)), page_cap=3) as sim:
        pages, offset = [], 0
        while True:
            page = listing(client, sim, ActorID=ACTOR, ResultsLimit=1000, ResultsOffset=offset)
            assert page.status_code == 200
            pages.append(page.json())
            if not page.json():
                break
            offset += len(page.json())
        assert [len(p) for p in pages] == [3, 3, 3, 1, 0]
        ids = [m["MachineID"] for p in pages for m in p]
        assert len(ids) == len(set(ids)) == 10
        assert len(listing(client, sim, ActorID=ACTOR, ResultsLimit=2).json()) == 2
        assert listing(client, sim, ActorID=ACTOR, ResultsLimit=0).status_code == 400
        assert listing(client, sim, ActorID=ACTOR, ResultsOffset="x").status_code == 400


def test_list_and_status_need_the_actors_token(client: requests.Session) -> None:
    fleet = Fleet(FleetSpec(actors=2, machines_per_actor=2))
    with SimulatorServer(fleet, tokens={ACTOR: "a", OTHER: "b"}) as sim:
        url = f"{sim.url}/v1/machines"
        mine = {"Authorization": "Bearer a"}
        assert client.get(url, params={"ActorID": OTHER}, headers=mine).status_code == 403
        assert client.get(url, params={"ActorID": ACTOR}).status_code == 401
        visible = client.get(url, headers=mine).json()
        assert {m["ActorID"] for m in visible} == {ACTOR}
        theirs = fleet.machines(OTHER)[0].id
        assert client.get(f"{url}/{theirs}/status", headers=mine).status_code == 403
        assert client.get(f"{url}/{theirs}/status").status_code == 401


def test_status_errors(sim: SimulatorServer, client: requests.Session) -> None:
    assert status(client, sim, "abc").status_code == 400
    assert status(client, sim, 12345).status_code == 404
    assert client.post(f"{sim.url}/v1/machines/942488501/status", headers=AUTH).status_code == 405


def test_status_agrees_with_the_operator_counts(client: requests.Session) -> None:
    fleet = Fleet(FleetSpec(actors=1, machines_per_actor=20, silent_probability=0.3))
    with SimulatorServer(fleet, strict=False) as sim:
        now = time.time()
        dash = client.get(f"{sim.url}/v1/actors/{ACTOR}/evDashboard", headers=AUTH).json()
        silent = 0
        for machine in fleet.machines(ACTOR):
            doc = status(client, sim, machine.id).json()
            age = now - utc_of(doc["LastKeepAliveDateTime"])
            assert doc["MachineMQTTStatus"] is (age < 120)
            silent += age > 3600
        assert silent == dash["OperatorDashboard"]["TotalSilentMachines"] > 0


def test_forced_silence_dates_the_last_keepalive(
    sim: SimulatorServer, client: requests.Session
) -> None:
    reply = client.post(
        f"{sim.url}/_sim/silence", json={"actor_id": ACTOR, "count": 1, "since_seconds": 5400}
    )
    assert reply.status_code == 200
    first, second = sim.fleet.machines(ACTOR)[:2]
    doc = status(client, sim, first.id).json()
    assert doc["MachineMQTTStatus"] is False
    assert utc_of(doc["LastKeepAliveDateTime"]) == pytest.approx(time.time() - 5400, abs=5)
    assert time.time() - utc_of(status(client, sim, second.id).json()["LastKeepAliveDateTime"]) < 61


def test_machine_local_convention_and_fraction_or_none(
    sim: SimulatorServer, client: requests.Session
) -> None:
    odd, even = sim.fleet.machines(ACTOR)[0], sim.fleet.machines(ACTOR)[1]
    utc_doc = status(client, sim, odd.id).json()
    assert "." in utc_doc["LastKeepAliveDateTime"]
    assert "." not in status(client, sim, even.id).json()["LastKeepAliveDateTime"]
    reply = client.post(f"{sim.url}/_sim/timestamps", json={"convention": "machine"})
    assert reply.status_code == 200
    local = status(client, sim, odd.id).json()["LastKeepAliveDateTime"]
    assert utc_of(local, odd.tz_offset_hours) == pytest.approx(
        utc_of(utc_doc["LastKeepAliveDateTime"]), abs=61
    )
    assert client.post(f"{sim.url}/_sim/timestamps", json={"convention": "x"}).status_code == 400


def test_format_timestamp_is_exact() -> None:
    machine = Fleet(FleetSpec(actors=1, machines_per_actor=1)).machines(ACTOR)[0]
    epoch = datetime(2026, 5, 14, 22, 17, 2, 877000, tzinfo=UTC).timestamp()
    assert format_timestamp(epoch, machine, "utc") == "2026-05-14T22:17:02.877"
    assert format_timestamp(None, machine, "utc") is None


def test_machine_without_device_answers_nulls(
    sim: SimulatorServer, client: requests.Session
) -> None:
    listed = listing(client, sim, ActorID=ACTOR).json()
    bare = [m for m in listed if m["DeviceSerialNumber"] is None]
    assert len(bare) == 1 and bare[0]["MachineTypeID"] not in EV_TYPES
    doc = status(client, sim, bare[0]["MachineID"]).json()
    assert doc["MachineMQTTStatus"] is False
    assert doc["LastKeepAliveDateTime"] is None and doc["LastReceptionLevel(RSSI)"] is None


def test_faults_hit_the_endpoint_they_name(sim: SimulatorServer, client: requests.Session) -> None:
    machine = sim.fleet.machines(ACTOR)[0]
    added = client.post(
        f"{sim.url}/_sim/faults", json={"kind": "status", "status": 503, "endpoint": "status"}
    )
    assert added.status_code == 201
    assert status(client, sim, machine.id).status_code == 503
    assert listing(client, sim, ActorID=ACTOR).status_code == 200
    dash = client.get(f"{sim.url}/v1/actors/{ACTOR}/evDashboard", headers=AUTH)
    assert dash.status_code == 200
    client.delete(f"{sim.url}/_sim/faults")
    client.post(f"{sim.url}/_sim/faults", json={"kind": "nulls", "machine": str(machine.id)})
    nulled = status(client, sim, machine.id).json()
    assert nulled["MachineID"] == machine.id and nulled["LastKeepAliveDateTime"] is None
    client.post(f"{sim.url}/_sim/faults", json={"kind": "truncated_json", "endpoint": "machines"})
    with pytest.raises(ValueError):
        listing(client, sim, ActorID=ACTOR).json()
    recorded = [r for r in sim.requests() if r.path.endswith("/status")]
    assert recorded[-1].machine == str(machine.id)
