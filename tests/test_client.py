"""The HTTP client in isolation, with `responses` standing in for the transport.

(The same behaviours are proven over real sockets against the simulator in the
fault-matrix tests; these pin the client's own decisions precisely and fast.)
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from responses import matchers

from exporter.config import LynxConfig, Secret
from exporter.lynx.client import (
    AuthError,
    BadPayloadError,
    ClientRequestError,
    ConnectionFailed,
    LynxClient,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TimeoutError_,
    parse_retry_after,
)
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from tests.harness import fetch_dashboard

BASE = "https://lynx.test/operational"
URL = f"{BASE}/v1/actors/42/evDashboard"
TOKEN = Secret("TKN-unit-test")
OK_BODY: dict[str, object] = {"OperatorDashboard": {}, "MachineDashboard": {}, "TimePeriod": None}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def __call__(self, code: str, seconds: float) -> None:
        self.seen.append((code, seconds))

    @property
    def codes(self) -> list[str]:
        return [code for code, _ in self.seen]


def make_client(
    recorder: Recorder, *, max_retries: int = 2, backoff_max: float = 1.0, rate: float = 0.0
) -> tuple[LynxClient, TokenGate]:
    gate = TokenGate()
    client = LynxClient(
        LynxConfig(
            base_url=BASE,
            token=TOKEN,
            timeout=1.0,
            max_retries=max_retries,
            retry_backoff=0.01,
            retry_backoff_max=backoff_max,
            rate_limit_per_second=rate,
            max_concurrency=2,
        ),
        observer=recorder,
        rate_limiter=RateLimiter(rate),
        token_gate=gate,
        stop=threading.Event(),
        rng=random.Random(1),
    )
    return client, gate


@responses.activate
def test_sends_bearer_token_and_parameters() -> None:
    responses.get(
        URL,
        json=OK_BODY,
        match=[
            matchers.header_matcher({"Authorization": "Bearer TKN-unit-test"}),
            matchers.query_param_matcher(
                {
                    "StartDate": "2026-01-01T00:00:00Z",
                    "EndDate": "2026-01-02T00:00:00Z",
                    "MachineID": "7",
                }
            ),
        ],
    )
    recorder = Recorder()
    client, _ = make_client(recorder)
    answer = fetch_dashboard(
        client,
        42,
        {"StartDate": "2026-01-01T00:00:00Z", "EndDate": "2026-01-02T00:00:00Z", "MachineID": "7"},
        TOKEN,
    )
    assert answer.payload == OK_BODY
    assert (answer.status, answer.attempts) == (200, 1)
    assert recorder.codes == ["200"]
    assert responses.calls[0].request.headers["User-Agent"].startswith("nayax-ev-exporter/")


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_retries_server_errors_then_succeeds(status: int) -> None:
    responses.get(URL, status=status, body="oops")
    responses.get(URL, json=OK_BODY)
    recorder = Recorder()
    client, _ = make_client(recorder)
    answer = fetch_dashboard(client, 42, {}, TOKEN)
    assert answer.attempts == 2
    assert recorder.codes == [str(status), "200"]


@responses.activate
def test_retries_are_bounded() -> None:
    responses.get(URL, status=503)
    recorder = Recorder()
    client, _ = make_client(recorder, max_retries=2)
    with pytest.raises(ServerError) as caught:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert len(responses.calls) == 3  # max_retries + 1
    assert caught.value.attempts == 3
    assert caught.value.reason == "server_error"


@responses.activate
@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (400, ClientRequestError, "client_error"),
        (401, AuthError, "auth"),
        (403, AuthError, "auth"),
        (404, NotFoundError, "not_found"),
    ],
)
def test_no_retry_on_client_errors(status: int, error: type[Exception], reason: str) -> None:
    responses.get(URL, status=status, json={"error": "no"})
    client, _ = make_client(Recorder())
    with pytest.raises(error) as caught:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert len(responses.calls) == 1
    assert getattr(caught.value, "reason", None) == reason
    assert TOKEN.reveal() not in str(caught.value)


@responses.activate
def test_429_retry_after_seconds_is_honoured_and_holds_the_token() -> None:
    responses.get(URL, status=429, headers={"Retry-After": "1"})
    responses.get(URL, json=OK_BODY)
    client, gate = make_client(Recorder(), backoff_max=5.0)
    started = time.monotonic()
    answer = fetch_dashboard(client, 42, {}, TOKEN)
    assert answer.attempts == 2
    assert time.monotonic() - started >= 1.0
    assert gate.delay(TOKEN.reveal()) == 0.0  # released after waiting


@responses.activate
def test_429_http_date_beyond_the_backoff_cap_ends_the_poll_but_holds_the_token() -> None:
    later = datetime.now(UTC) + timedelta(seconds=120)
    responses.get(URL, status=429, headers={"Retry-After": email.utils.format_datetime(later)})
    client, gate = make_client(Recorder(), backoff_max=1.0)
    with pytest.raises(RateLimitedError) as caught:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert len(responses.calls) == 1
    assert 100 < caught.value.retry_after <= 120
    assert 100 < gate.delay(TOKEN.reveal()) <= 120
    assert gate.delay("another-token") == 0.0


@responses.activate
def test_timeouts_and_connection_errors_are_typed_and_retried() -> None:
    responses.get(URL, body=requests.ReadTimeout("read timed out"))
    responses.get(URL, body=requests.ConnectionError("Connection refused"))
    responses.get(URL, body=requests.ConnectionError("boom"))
    recorder = Recorder()
    client, _ = make_client(recorder, max_retries=2)
    with pytest.raises(ConnectionFailed) as caught:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert recorder.codes == ["timeout", "connection", "connection"]
    assert caught.value.reason == "connection"

    responses.get(URL, body=requests.ConnectTimeout("slow"))
    client, _ = make_client(Recorder(), max_retries=0)
    with pytest.raises(TimeoutError_) as timed_out:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert timed_out.value.reason == "timeout"


@responses.activate
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body>Service unavailable</body></html>", "text/html"),
        ('{"OperatorDashboard": {"TotalOper', "application/json"),
        ("", "application/json"),
    ],
)
def test_200_with_unusable_body_is_bad_payload_without_retry(body: str, content_type: str) -> None:
    responses.get(URL, body=body, content_type=content_type)
    client, _ = make_client(Recorder())
    with pytest.raises(BadPayloadError, match="not JSON") as caught:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert caught.value.reason == "bad_payload"
    assert len(responses.calls) == 1


@responses.activate
def test_nan_tokens_are_decoded_for_the_parser_to_reject() -> None:
    responses.get(URL, body='{"MachineDashboard": {"TotalEnergyConsumption": NaN}}')
    client, _ = make_client(Recorder())
    payload = fetch_dashboard(client, 42, {}, TOKEN).payload
    assert isinstance(payload, dict)
    value = payload["MachineDashboard"]["TotalEnergyConsumption"]
    assert math.isnan(value)  # reading.parse_payload reports it as bad_payload


@responses.activate
@pytest.mark.parametrize("status", [201, 204])
def test_an_unusable_2xx_body_names_its_true_status(status: int) -> None:
    responses.get(URL, body="", status=status, content_type="text/plain\u2028x")
    client, _ = make_client(Recorder())
    with pytest.raises(BadPayloadError) as caught:
        fetch_dashboard(client, 42, {}, TOKEN)
    assert str(caught.value).startswith(f"HTTP {status} with a body that is not JSON")
    assert caught.value.status == status


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("²", now) is None  # "²".isdigit() is True; float("²") raises
    assert parse_retry_after("٣", now) is None
    assert parse_retry_after("9" * 5000, now) == 10 * 365 * 86400.0
    assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT", now) is None
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_repr_hides_the_token() -> None:
    client, _ = make_client(Recorder())
    assert TOKEN.reveal() not in repr(client)
    assert repr(TOKEN) == "Secret('********')"


def test_rate_limiter_spaces_requests() -> None:
    clock = [0.0]
    limiter = RateLimiter(4.0, clock=lambda: clock[0])
    slots = [limiter.reserve() for _ in range(5)]
    assert slots == pytest.approx([0.0, 0.2625, 0.525, 0.7875, 1.05])
    # Any window of one second holds at most `rate` slots.
    assert all(sum(1 for s in slots if start <= s <= start + 1.0) <= 4 for start in slots)
    assert limiter.rate == 4.0
    assert RateLimiter(0).reserve() > 0  # unlimited: now


@responses.activate
def test_echoed_token_is_scrubbed_from_values_but_field_names_survive() -> None:
    short = Secret("Dash")  # a substring of "OperatorDashboard" and "MachineDashboard"
    responses.get(
        URL,
        json={
            "OperatorDashboard": {"TotalOperatorMachines": 3},
            "MachineDashboard": {"UnitOfMeasureSymbol": "Bearer Dash"},
        },
    )
    client, _ = make_client(Recorder())
    payload = fetch_dashboard(client, 42, {}, short).payload
    assert isinstance(payload, dict)
    assert payload["OperatorDashboard"] == {"TotalOperatorMachines": 3}
    assert payload["MachineDashboard"]["UnitOfMeasureSymbol"] == "Bearer <redacted>"


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        # the token spelled with JSON escapes: absent from the raw bytes, present once parsed
        b'{"MachineDashboard": {"UnitOfMeasureSymbol": "Bearer \\u0044ash"}}',
        b'{"MachineDashboard": {"UnitOfMeasureSymbol": "Bearer D\\u0061sh"}}',
        b'{"MachineDashboard": {"UnitOfMeasureSymbol": "Bearer Dash"}}',
    ],
)
def test_escaped_echo_of_the_token_is_scrubbed_too(body: bytes) -> None:
    responses.get(URL, body=body, content_type="application/json")
    client, _ = make_client(Recorder())
    payload = fetch_dashboard(client, 42, {}, Secret("Dash")).payload
    assert isinstance(payload, dict)
    assert payload["MachineDashboard"]["UnitOfMeasureSymbol"] == "Bearer <redacted>"


@responses.activate
def test_request_carries_session_headers_query_and_attempt_header() -> None:
    responses.get(URL, json={"OperatorDashboard": {}})
    client, _ = make_client(Recorder())
    fetch_dashboard(
        client, 42, {"StartDate": "2026-11-22T00:00:00.000Z", "MachineID": "7"}, Secret("tok")
    )
    sent = responses.calls[0].request
    assert sent.url == f"{URL}?StartDate=2026-11-22T00:00:00.000Z&MachineID=7"
    assert sent.headers["Authorization"] == "Bearer tok"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("nayax-ev-exporter/")
    assert sent.headers["X-Request-Attempt"].endswith(" 1/3")  # max_retries=2
