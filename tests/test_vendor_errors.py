"""The vendor's own error texts, and a simulator as strict as the vendor (issue 14,
parts 2 and 3; issue 20).

The client's reading of error bodies is pinned with ``responses``; the simulator's
rules over real HTTP; and a real exporter shows the message and correlation id of
a vendor 400, 403 and 404 in its ``target down`` log lines and on its landing page.
"""

from __future__ import annotations

import html
import json
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from exporter.config import LynxConfig, Secret
from exporter.lynx.client import (
    AuthError,
    BadPayloadError,
    ClientRequestError,
    LynxClient,
    ServerError,
    vendor_detail,
)
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from exporter.simulator.vendor import PERIOD_OR_DATES
from tests.harness import (
    VENDOR_ERROR_FIELDS,
    fetch_dashboard,
    running_exporter,
    simulator_config,
    wait_for,
    write_config,
)

BASE = "https://lynx.test/operational"
URL = f"{BASE}/v1/actors/42/evDashboard"
TOKEN = "TKN-vendor-errors-7c1"
VENDOR_400 = {
    "message": PERIOD_OR_DATES,
    "errorKey": "InvalidParameters",
    "errorCode": 400,
    "errorMessage": PERIOD_OR_DATES,
    "correlationId": "5b0f7c1e-2d7a-4c8e-9a51-0c9d2a1f7e33",
    "isUserError": True,
}


def make_client() -> LynxClient:
    return LynxClient(
        LynxConfig(base_url=BASE, timeout=1.0, max_retries=0, rate_limit_per_second=0),
        observer=lambda _code, _seconds: None,
        rate_limiter=RateLimiter(0),
        token_gate=TokenGate(),
        stop=threading.Event(),
        rng=random.Random(1),
    )


def failure_of(status: int, body: object | str) -> Exception:
    text = body if isinstance(body, str) else json.dumps(body)
    with responses.RequestsMock() as mock:
        mock.get(URL, status=status, body=text)
        with pytest.raises(Exception) as caught:
            fetch_dashboard(make_client(), 42, {}, Secret(TOKEN))
    return caught.value


# --- the client quotes the vendor -------------------------------------------------


def test_a_vendor_400_carries_its_message_and_correlation_id() -> None:
    error = failure_of(400, VENDOR_400)
    assert isinstance(error, ClientRequestError)
    assert str(error) == (
        f'HTTP 400: request rejected: "{PERIOD_OR_DATES}" '
        "(correlationId 5b0f7c1e-2d7a-4c8e-9a51-0c9d2a1f7e33)"
    )


def test_error_message_is_the_fallback_and_every_status_quotes_it() -> None:
    body = {"errorMessage": "TimePeriod:7 is not valid", "correlationId": 991}
    assert str(failure_of(400, body)).endswith('"TimePeriod:7 is not valid" (correlationId 991)')
    unauthorized = {"message": "Unauthorized", "isUserError": False, "errorKey": None}
    error = failure_of(401, unauthorized)
    assert isinstance(error, AuthError)
    assert str(error) == 'HTTP 401: token rejected: "Unauthorized"'
    error = failure_of(500, VENDOR_400)
    assert isinstance(error, ServerError) and "correlationId 5b0f7c1e" in str(error)


@pytest.mark.parametrize(
    "body",
    ["<html><body>Bad Request</body></html>", "", "[1, 2]", '"just a string"', "{broken"],
)
def test_a_body_without_the_vendor_shape_gives_the_status_alone(body: str) -> None:
    assert str(failure_of(400, body)) == "HTTP 400: request rejected"


def test_the_vendor_text_is_scrubbed_and_cut() -> None:
    body = {
        "message": f"bad header Bearer {TOKEN}\r\nX-Injected: 1\x00" + "y" * 5000,
        "correlationId": "c" * 500 + TOKEN,
    }
    text = str(failure_of(400, body))
    assert TOKEN not in text and "\r" not in text and "\n" not in text and "\x00" not in text
    assert "bad header Bearer <redacted> X-Injected: 1" in text
    assert len(text) < 400
    # A token cut in half by the length limit is still never shown in part.
    assert TOKEN[:8] not in vendor_detail(
        json.dumps({"message": "x" * 195 + TOKEN}).encode(), (TOKEN,)
    )


def test_vendor_texts_go_through_the_upstream_boundary() -> None:
    message = json.dumps("bad\ud800name\u2028forged\x1b[31m")
    text = str(failure_of(400, f'{{"message": {message}, "correlationId": {"9" * 4000}}}'))
    text.encode("utf-8")  # a lone surrogate would fail here (and in every log line)
    assert text == 'HTTP 400: request rejected: "bad\ufffdname forged\ufffd[31m"'


def test_a_200_carrying_a_failure_object_is_bad_payload_with_its_message() -> None:
    with responses.RequestsMock() as mock:
        mock.get(URL, status=200, json={**VENDOR_400, "message": "Actor is not an operator"})
        with pytest.raises(BadPayloadError) as caught:
            fetch_dashboard(make_client(), 42, {}, Secret(TOKEN))
    assert str(caught.value) == (
        'HTTP 200 with a failure in its body: "Actor is not an operator" '
        "(correlationId 5b0f7c1e-2d7a-4c8e-9a51-0c9d2a1f7e33)"
    )
    assert caught.value.reason == "bad_payload"


# --- the simulator is as strict as the vendor -------------------------------------


@pytest.fixture(scope="module")
def strict() -> Any:
    with SimulatorServer(Fleet(FleetSpec(seed=2, actors=1, machines_per_actor=1))) as sim:
        yield sim


def ask(sim: SimulatorServer, **params: str) -> requests.Response:
    return requests.get(
        f"{sim.url}/v1/actors/{sim.fleet.actor_ids()[0]}/evDashboard",
        params=params,
        headers={"Authorization": "Bearer sim-token"},
        timeout=5,
    )


DATES = {"StartDate": "2024-03-01T00:00:00Z", "EndDate": "2024-03-02T00:00:00Z"}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"StartDate": DATES["StartDate"]},
        {"EndDate": DATES["EndDate"]},
        {**DATES, "TimePeriod": "1"},
    ],
    ids=["neither", "start-only", "end-only", "both"],
)
def test_the_simulator_refuses_what_the_vendor_refuses(
    strict: SimulatorServer, params: dict[str, str]
) -> None:
    answer = ask(strict, **params)
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == VENDOR_ERROR_FIELDS
    assert body["message"] == PERIOD_OR_DATES and body["isUserError"] is True
    assert body["correlationId"] != ask(strict, **params).json()["correlationId"]


def test_the_simulator_accepts_a_period_or_both_dates(strict: SimulatorServer) -> None:
    assert ask(strict, **DATES).status_code == 200
    assert ask(strict, TimePeriod="3").status_code == 200
    strict.time_periods = frozenset({3})
    try:
        assert ask(strict, TimePeriod="3").status_code == 200
        refused = ask(strict, TimePeriod="7")
        assert refused.status_code == 400
        assert refused.json()["message"] == "TimePeriod:7 is not valid"
    finally:
        strict.time_periods = None


# --- a real exporter shows them -----------------------------------------------------


def test_a_vendor_400_shows_in_the_log_and_on_the_landing_page(tmp_path: Path) -> None:
    fleet = Fleet(FleetSpec(seed=2, actors=1, machines_per_actor=1))
    with SimulatorServer(fleet) as sim:
        sim.time_periods = frozenset()  # like the vendor's QA: no code is valid
        document = simulator_config(
            sim.url,
            [{"id": fleet.actor_ids()[0]}],
            windows=[{"name": "period7", "time_period": 7}],
        )
        with running_exporter(write_config(tmp_path / "c.yaml", document)) as exporter:
            wait_for(
                lambda: any(e.get("event") == "target down" for e in exporter.logs()),
                timeout=15,
                what="the target down line",
            )
            page = requests.get(exporter.url, timeout=5).text
            down = next(e for e in exporter.logs() if e.get("event") == "target down")
    assert down["reason"] == "client_error"
    assert down["error"].startswith('HTTP 400: request rejected: "TimePeriod:7 is not valid"')
    assert "(correlationId " in down["error"]
    assert "TimePeriod:7 is not valid" in page and "correlationId" in page


def test_a_vendor_403_and_404_show_in_the_log_and_on_the_landing_page(tmp_path: Path) -> None:
    fleet = Fleet(FleetSpec(seed=2, actors=1, machines_per_actor=1))
    (actor,) = fleet.actor_ids()
    unknown = 12345  # a token exists for it, no machine: the vendor's 404
    tokens = {actor: "token-a", unknown: "token-b", actor + 1: "token-c"}
    with SimulatorServer(fleet, tokens=tokens) as sim:
        document = simulator_config(
            sim.url, [{"id": actor, "token": "token-c"}, {"id": unknown, "token": "token-b"}]
        )
        with running_exporter(write_config(tmp_path / "c.yaml", document)) as exporter:

            def downs() -> dict[str, dict[str, Any]]:
                lines = [e for e in exporter.logs() if e.get("event") == "target down"]
                return {e["reason"]: e for e in lines}

            wait_for(lambda: len(downs()) == 2, timeout=15, what="both target down lines")
            page = html.unescape(requests.get(exporter.url, timeout=5).text)
    correlated = r' "{}" \(correlationId [0-9a-f]{{8}}-[0-9a-f-]{{27}}\)'
    for reason, start, message in (
        ("auth", "HTTP 403: token rejected:", "The token does not grant access to this actor"),
        ("not_found", "HTTP 404: unknown actor or machine:", f"Actor {unknown} was not found"),
    ):
        shown = re.escape(start) + correlated.format(re.escape(message))
        assert re.fullmatch(shown, downs()[reason]["error"]), downs()[reason]["error"]
        assert re.search(shown, page)  # the latest poll's, with its own correlation id
    assert "token-" not in page


def test_nothing_the_exporter_sends_is_refused_by_the_strict_simulator(tmp_path: Path) -> None:
    fleet = Fleet(FleetSpec(seed=6, actors=2, machines_per_actor=2))
    actor, other = fleet.actor_ids()
    machine = fleet.machines(actor)[0]
    with SimulatorServer(fleet) as sim:
        assert sim.strict
        document = simulator_config(
            sim.url,
            [
                {
                    "id": actor,
                    "machines": [{"id": machine.id}, {"number": fleet.machines(actor)[1].number}],
                },
                {"id": other},
            ],
            windows=[
                {"name": "1h", "rolling": "1h"},
                {"name": "today", "calendar": "day", "timezone": "Europe/Berlin"},
                {"name": "month", "calendar": "month"},
                {"name": "code", "time_period": 2},
            ],
        )
        with running_exporter(write_config(tmp_path / "c.yaml", document)) as exporter:
            wait_for(exporter.ready, timeout=20, what="every target polled")
        statuses = [r.status for r in sim.requests() if r.status]
    assert statuses and set(statuses) == {200}
