"""The simulator answers as the vendor's OpenAPI document says (issue 20).

Real answers over loopback HTTP are checked against ``MachineInfo``,
``MachineStatusInfo`` and ``EvMeterDashBoard`` as the vendor publishes them
(lynx_schemas.json, copied from the document by extract_lynx_schemas.py): field
types and formats, nullability, enums, and no field the document does not have.
Every error the API routes answer has the vendor's shape.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
import requests

from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.simulator.fleet import EV_TYPES
from tests.harness import VENDOR_ERROR_FIELDS
from tests.simulator.openapi_subset import load_schemas, problems

SCHEMAS: Final = load_schemas()
ACTORS: Final = (2001492652, 2001492653, 2001492654)
AUTH: Final = {"Authorization": "Bearer sim-token"}
DATES: Final = {"StartDate": "2024-03-01T00:00:00Z", "EndDate": "2024-03-02T00:00:00Z"}
# The one departure from the document, kept on purpose: it types TotalEnergyConsumption
# as int32, which cannot hold kWh with decimals; the simulator sends a fractional
# figure, and the exporter reads any number.
ENERGY_PATH: Final = "$.MachineDashboard.TotalEnergyConsumption"
DEPARTURES: Final = {ENERGY_PATH: {"type": "number", "format": "double"}}


def conforms(document: object, schema_name: str) -> None:
    found = problems(document, SCHEMAS[schema_name], SCHEMAS, departures=DEPARTURES)
    assert not found, "\n".join(found)


@pytest.fixture(scope="module")
def vendor_like() -> Iterator[SimulatorServer]:
    """Strict, like the vendor; every kind of machine, three energy units, silences."""
    spec = FleetSpec(
        actors=3,
        machines_per_actor=5,
        other_machines_per_actor=5,
        silent_probability=0.3,
        energy_unit_overrides=((ACTORS[1], "Wh"), (ACTORS[2], "MWh")),
    )
    with SimulatorServer(Fleet(spec), page_cap=7) as sim:
        sim.fleet.silence(ACTORS[0], 2)
        yield sim


def get(sim: SimulatorServer, path: str, **params: str | int) -> requests.Response:
    return requests.get(f"{sim.url}{path}", params=params, headers=AUTH, timeout=5)


def listing(sim: SimulatorServer) -> list[Any]:
    """Every record of ``GET /v1/machines``, page by page to the empty page."""
    records: list[Any] = []
    while True:
        page = get(sim, "/v1/machines", ResultsLimit=1000, ResultsOffset=len(records))
        assert page.status_code == 200
        if not page.json():
            return records
        records += page.json()


def test_the_machine_list_is_machine_info(vendor_like: SimulatorServer) -> None:
    records = listing(vendor_like)
    assert len(records) == 3 * (5 + 5)
    for record in records:
        conforms(record, "MachineInfo")
    # The enum check is not vacuous: non-EV kinds, a country id, a bare machine.
    kinds = {record["MachineTypeID"] for record in records}
    assert len(kinds - EV_TYPES) >= 4 and kinds >= EV_TYPES
    assert all(isinstance(record["GeoCountry"], int) for record in records)
    assert any(record["DeviceSerialNumber"] is None for record in records)


@pytest.mark.parametrize("convention", ["utc", "machine"])
def test_every_status_is_machine_status_info(vendor_like: SimulatorServer, convention: str) -> None:
    vendor_like.timestamps = convention
    try:
        answers = [
            get(vendor_like, f"/v1/machines/{record['MachineID']}/status")
            for record in listing(vendor_like)
        ]
    finally:
        vendor_like.timestamps = "utc"
    assert {answer.status_code for answer in answers} == {200}
    for answer in answers:
        conforms(answer.json(), "MachineStatusInfo")
    mqtt = [answer.json()["MachineMQTTStatus"] for answer in answers]
    assert True in mqtt and False in mqtt  # silent and communicating machines both seen


def test_every_dashboard_is_ev_meter_dashboard(vendor_like: SimulatorServer) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    today = {"StartDate": now[:11] + "00:00:00Z", "EndDate": now}
    energies: list[object] = []
    for actor in ACTORS:
        machine = vendor_like.fleet.machines(actor)[0]
        path = f"/v1/actors/{actor}/evDashboard"
        for params in (
            DATES,
            today,
            {"TimePeriod": "3"},
            {**today, "MachineID": str(machine.id)},
            {**today, "MachineNumber": machine.number},
        ):
            answer = get(vendor_like, path, **params)
            assert answer.status_code == 200, answer.text
            conforms(answer.json(), "EvMeterDashBoard")
            energies.append(answer.json()["MachineDashboard"]["TotalEnergyConsumption"])
    # The departure is real (else it should go): some energy figures have decimals.
    assert any(isinstance(e, float) and not e.is_integer() for e in energies)


def test_the_checker_catches_what_the_simulator_once_sent() -> None:
    """The old listing's GeoCountry text, MachineTypeID 1, and an unknown field."""
    old = {"MachineID": 1, "GeoCountry": "DE", "MachineTypeID": 1, "Kind": "kiosk"}
    assert problems(old, SCHEMAS["MachineInfo"], SCHEMAS) == [
        "$.GeoCountry: 'DE' is not of type integer (int32)",
        "$.MachineTypeID: 1 is not one of the document's enum values",
        "$.Kind: a field the document does not have",
    ]
    status = {"MachineMQTTStatus": None, "LastKeepAliveDateTime": "yesterday"}
    assert problems(status, SCHEMAS["MachineStatusInfo"], SCHEMAS) == [
        "$.MachineMQTTStatus: null, but the document does not allow it",
        "$.LastKeepAliveDateTime: 'yesterday' is not an ISO 8601 date-time",
    ]
    dashboard = {"MachineDashboard": {"TotalEnergyConsumption": 1.5}, "TimePeriod": 2**31}
    assert problems(dashboard, SCHEMAS["EvMeterDashBoard"], SCHEMAS) == [
        "$.MachineDashboard.TotalEnergyConsumption: 1.5 is not of type integer (int32)",
        "$.TimePeriod: 2147483648 is out of the int32 range",
    ]


# --- errors -------------------------------------------------------------------------

OTHERS_TOKEN: Final = {"Authorization": "Bearer token-b"}  # valid for ACTORS[1] only
FIRST_MACHINE: Final = 942488501  # ACTORS[0]'s first charger
DASHBOARD: Final = f"/v1/actors/{ACTORS[0]}/evDashboard"
LIST: Final = "/v1/machines"
STATUS_PATH: Final = f"/v1/machines/{FIRST_MACHINE}/status"
NO_TOKEN: Final[dict[str, str]] = {}


@dataclass(frozen=True)
class Case:
    """An API request the vendor refuses; ``headers`` None: the actor's own token."""

    what: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] | None
    status: int


CASES: Final = [
    Case("dashboard without dates", "GET", DASHBOARD, {}, None, 400),
    Case("dashboard, bad date", "GET", DASHBOARD, {"StartDate": "x", "EndDate": "y"}, None, 400),
    Case("dashboard, bad actor", "GET", "/v1/actors/abc/evDashboard", DATES, None, 400),
    Case("list, bad limit", "GET", LIST, {"ResultsLimit": "0"}, None, 400),
    Case("status, bad id", "GET", "/v1/machines/abc/status", {}, None, 400),
    Case("dashboard, no token", "GET", DASHBOARD, DATES, NO_TOKEN, 401),
    Case("list, no token", "GET", LIST, {}, NO_TOKEN, 401),
    Case("exchange, bad", "POST", "/v1/issue-access-token", {}, {"Authorization": "jwt x"}, 401),
    Case("dashboard, other's token", "GET", DASHBOARD, DATES, OTHERS_TOKEN, 403),
    Case("list, other's token", "GET", LIST, {"ActorID": str(ACTORS[0])}, OTHERS_TOKEN, 403),
    Case("status, other's token", "GET", STATUS_PATH, {}, OTHERS_TOKEN, 403),
    Case("dashboard, unknown actor", "GET", "/v1/actors/12345/evDashboard", DATES, None, 404),
    Case("dashboard, unknown machine", "GET", DASHBOARD, {**DATES, "MachineID": "1"}, None, 404),
    Case("status, unknown machine", "GET", "/v1/machines/12345/status", {}, None, 404),
    Case("unknown path", "GET", "/v1/actors", {}, None, 404),
    Case("dashboard, POST", "POST", DASHBOARD, DATES, None, 405),
    Case("status, DELETE", "DELETE", STATUS_PATH, {}, None, 405),
    Case("exchange, GET", "GET", "/v1/issue-access-token", {}, None, 405),
]


@pytest.fixture(scope="module")
def scoped() -> Iterator[SimulatorServer]:
    """Strict, with per-actor tokens (``token-a`` for ACTORS[0], ``token-b``
    for ACTORS[1]) and 12345 as an actor a token exists for but no fleet has."""
    tokens = {ACTORS[0]: "token-a", ACTORS[1]: "token-b", 12345: "token-a"}
    with SimulatorServer(Fleet(FleetSpec(actors=2)), tokens=tokens) as sim:
        yield sim


def assert_vendor_error(answer: requests.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    body = answer.json()
    if status == 401:  # what the vendor was seen to send
        assert body == {"message": "Unauthorized", "isUserError": False, "errorKey": None}
        return
    assert set(body) == VENDOR_ERROR_FIELDS
    assert isinstance(body["message"], str) and body["message"]
    assert body["errorMessage"] == body["message"]
    assert isinstance(body["errorKey"], str) and body["errorKey"]
    assert body["errorCode"] == status
    assert body["isUserError"] is (status < 500)
    uuid.UUID(body["correlationId"])


@pytest.mark.parametrize("case", CASES, ids=[case.what for case in CASES])
def test_every_api_error_has_the_vendors_shape(scoped: SimulatorServer, case: Case) -> None:
    sent = {"Authorization": "Bearer token-a"} if case.headers is None else case.headers
    url = f"{scoped.url}{case.path}"
    answer = requests.request(case.method, url, params=case.query, headers=sent, timeout=5)
    assert_vendor_error(answer, case.status)


@pytest.mark.parametrize("status", [400, 404, 429, 500, 502, 503, 504])
@pytest.mark.parametrize("endpoint", ["dashboard", "machines", "status"])
def test_status_faults_answer_the_vendors_shape(
    scoped: SimulatorServer, status: int, endpoint: str
) -> None:
    path = {"dashboard": DASHBOARD, "machines": LIST, "status": STATUS_PATH}[endpoint]
    scoped.add_fault(Fault(FaultKind.STATUS, status=status, endpoint=endpoint, remaining=1))
    try:
        answer = requests.get(
            f"{scoped.url}{path}",
            params=DATES if endpoint == "dashboard" else {},
            headers={"Authorization": "Bearer token-a"},
            timeout=5,
        )
    finally:
        scoped.clear_faults()
    assert_vendor_error(answer, status)


@pytest.mark.parametrize("status", [403, 429, 500])
def test_a_refused_exchange_has_the_vendors_shape(scoped: SimulatorServer, status: int) -> None:
    scoped.issuer.fail_status = status
    try:
        answer = requests.post(
            f"{scoped.url}/v1/issue-access-token", headers={"Authorization": "jwt r"}, timeout=5
        )
    finally:
        scoped.issuer.fail_status = None
    assert_vendor_error(answer, status)
