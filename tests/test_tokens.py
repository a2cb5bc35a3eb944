"""Scoped tokens (issue 14, part 1): refresh tokens exchanged for access tokens.

Pure decisions first, then the broker with a fake exchange (renewals in virtual
time), then the client over real HTTP against the simulator's ``POST
/v1/issue-access-token``, then a real exporter process: a rejected refresh token,
the alert's expression over its metrics (promtool), a rotated
``refresh_token_file`` picked up on reload, a token server answering nonsense.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import responses
import yaml

from exporter.config import LynxConfig, RefreshToken, parse_config
from exporter.lynx.client import AuthError, LynxClient, TimeoutError_
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.lynx.tokens import (
    BACKOFF_MAX,
    DEFAULT_LIFETIME,
    LONGEST_LIFETIME,
    MAX_ACCESS_TOKEN_CHARS,
    SHORTEST_LIFETIME,
    TokenBroker,
    access_token,
    exchange_backoff,
    jwt_expiry,
    token_lifetime,
    unknown_renewal,
    usable_access_token,
)
from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from exporter.simulator.vendor import TokenIssuer
from tests.harness import (
    REPO,
    ExporterProcess,
    config_check,
    fetch_dashboard,
    run_promtool,
    running_exporter,
    select,
    simulator_config,
    wait_for,
    write_config,
)

REFRESH = "refresh-6b2e-not-a-real-one"
EXCHANGE = "/v1/issue-access-token"
RUNBOOK = "https://github.com/nayax-ev-exporter/nayax-ev-exporter/blob/main/docs/runbook.md#"


def jwt(claims: object) -> str:
    def segment(doc: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none'})}.{segment(claims)}.sig"


def window() -> dict[str, str]:
    end = datetime.now(UTC)
    return {
        "StartDate": (end - timedelta(hours=1)).isoformat(),
        "EndDate": end.isoformat(),
    }


# --- pure decisions ---------------------------------------------------------------


def test_jwt_expiry_is_read_without_verifying() -> None:
    assert jwt_expiry(jwt({"exp": 1_900_000_000})) == 1_900_000_000.0
    assert jwt_expiry(jwt({"exp": 1.5e9, "sub": "x"})) == 1.5e9
    assert jwt_expiry(jwt({"sub": "no exp"})) is None
    assert jwt_expiry(jwt({"exp": "1900000000"})) is None
    assert jwt_expiry(jwt({"exp": True})) is None
    assert jwt_expiry(jwt([1, 2])) is None
    assert jwt_expiry("opaque-token") is None
    assert jwt_expiry("a.%%%.c") is None
    assert jwt_expiry("a.bm90IGpzb24.c") is None  # "not json"


def test_access_tokens_renew_when_a_quarter_of_their_life_is_left() -> None:
    wall, mono = 1_000_000.0, 50.0
    token = access_token(jwt({"exp": wall + 4000}), wall, mono)
    assert token.expires_at == wall + 4000 and token.renew_at == mono + 3000
    # No exp: the vendor's 24 h.
    token = access_token("opaque", wall, mono)
    assert token.expires_at == wall + DEFAULT_LIFETIME
    assert token.renew_at == mono + 0.75 * DEFAULT_LIFETIME
    # Already expired by our clock (skew): renewal is still at least 1 s away.
    assert access_token(jwt({"exp": wall - 100}), wall, mono).renew_at >= mono + 0.75


def test_an_access_token_must_look_like_a_bearer_token() -> None:
    assert usable_access_token(jwt({"exp": 1_900_000_000}))
    assert usable_access_token("A" * 16) and usable_access_token("a-b.c_d~e+f/g0h9==")
    assert usable_access_token("x" * MAX_ACCESS_TOKEN_CHARS)
    for unusable in (
        "e",
        "x" * 15,  # too short to be a token (and to be scrubbed from logs)
        "x" * (MAX_ACCESS_TOKEN_CHARS + 1),
        "sixteen chars ok",  # a space
        'quote"in-the-token',
        "back\\slash-in-the-token",
        "padding=in-the-middle",
        "non-ascii-token-é-here",
        "line\nbreak-in-the-token",
        None,
        12345678901234567890,
        ["a-list-of-one-token"],
    ):
        assert not usable_access_token(unusable), unusable


def test_an_exp_in_the_past_near_far_or_not_finite_gives_no_lifetime() -> None:
    wall = 1_700_000_000.0
    assert token_lifetime(None, wall) == DEFAULT_LIFETIME  # no exp: the vendor's 24 h
    assert token_lifetime(wall + 4000, wall) == 4000
    assert token_lifetime(wall + SHORTEST_LIFETIME, wall) == SHORTEST_LIFETIME
    assert token_lifetime(wall + LONGEST_LIFETIME, wall) == LONGEST_LIFETIME
    unknown = (
        wall - 100,  # expired
        -1.0,  # negative
        0.0,
        wall,
        wall + SHORTEST_LIFETIME - 1,  # would be renewed every 45 s or less
        wall + LONGEST_LIFETIME + 1,
        32503680000.0,  # the year 3000
        float("inf"),
        float("-inf"),
        float("nan"),
    )
    for exp in unknown:
        assert token_lifetime(exp, wall) is None, exp
    # An integer too large for a float is read as infinite, not raised from.
    assert jwt_expiry(jwt({"exp": 10**400})) == float("inf")
    assert jwt_expiry(jwt({"exp": -(10**400)})) == float("-inf")
    assert token_lifetime(jwt_expiry(jwt({"exp": float("nan")})), wall) is None


def test_a_token_of_unknown_lifetime_is_kept_for_24_h_and_renewed_backing_off() -> None:
    wall, mono = 1_700_000_000.0, 50.0
    for unknown_before, renew_in in ((0, 15.0), (1, 30.0), (2, 60.0), (10, BACKOFF_MAX)):
        token = access_token(jwt({"exp": -1}), wall, mono, unknown_before)
        assert not token.known
        assert token.expires_at == wall + DEFAULT_LIFETIME  # neither 1970 nor the past
        assert token.renew_at == mono + renew_in
    assert access_token(jwt({"exp": wall + 4000}), wall, mono, 5).known
    assert [unknown_renewal(n) for n in range(1, 8)] == [15, 30, 60, 120, 240, 300, 300]
    assert unknown_renewal(10_000) == BACKOFF_MAX


def test_exchange_backoff_doubles_up_to_a_cap_and_honours_retry_after() -> None:
    assert [exchange_backoff(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert exchange_backoff(40, None) == BACKOFF_MAX
    assert exchange_backoff(1, 30.0) == 30.0
    assert exchange_backoff(1, 1e12) == BACKOFF_MAX


# --- the broker ---------------------------------------------------------------------


class FakeExchange:
    def __init__(self, lifetime: float = 1000.0, delay: float = 0.0) -> None:
        self.calls = 0
        self.fail: Exception | None = None
        self.lifetime = lifetime
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, refresh: RefreshToken) -> str:
        with self._lock:
            self.calls += 1
            serial = self.calls
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return jwt({"exp": time.time() + self.lifetime, "n": serial})


def test_concurrent_polls_share_one_exchange() -> None:
    exchange = FakeExchange(delay=0.2)
    broker = TokenBroker(exchange)
    refresh = RefreshToken(REFRESH)
    got: list[str] = []
    threads = [
        threading.Thread(target=lambda: got.append(broker.access(refresh).reveal()))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert exchange.calls == 1 and len(got) == 8 and len(set(got)) == 1


def test_failed_exchanges_back_off_and_a_valid_old_token_is_kept() -> None:
    now = [0.0]
    exchange = FakeExchange(lifetime=100.0)
    broker = TokenBroker(exchange, clock=lambda: now[0])
    refresh = RefreshToken(REFRESH)
    first = broker.access(refresh)
    now[0] = 80.0  # renewal due (75 s), token valid until 100 s of wall time
    exchange.fail = AuthError("HTTP 503", status=503)
    assert broker.access(refresh) == first  # the exchange failed: old token, still valid
    for _ in range(50):  # polls during the back-off: no exchange
        assert broker.access(refresh) == first
    assert exchange.calls == 2
    now[0] = 81.5  # back-off (1 s) over: one more try, then 2 s
    broker.access(refresh)
    assert exchange.calls == 3
    exchange.fail = None
    now[0] = 84.0
    assert broker.access(refresh) != first and exchange.calls == 4


def test_without_any_token_a_failed_exchange_fails_every_poll_until_the_backoff_ends() -> None:
    now = [0.0]
    exchange = FakeExchange()
    exchange.fail = AuthError("HTTP 401: token rejected", status=401)
    broker = TokenBroker(exchange, clock=lambda: now[0])
    refresh = RefreshToken(REFRESH)
    for _ in range(20):
        with pytest.raises(AuthError):
            broker.access(refresh)
    assert exchange.calls == 1
    assert broker.expiry(refresh) == 0.0


def test_a_rejected_access_token_is_renewed_at_once_then_backed_off() -> None:
    now = [10.0]
    exchange = FakeExchange()
    broker = TokenBroker(exchange, clock=lambda: now[0])
    refresh = RefreshToken(REFRESH)
    first = broker.access(refresh)
    now[0] = 10.5  # within a second of the exchange: a first 401 renews at once
    error = AuthError("HTTP 401", status=401)
    broker.rejected(refresh, first, error)
    broker.rejected(refresh, first, error)  # a concurrent poll's 401: no second drop
    second = broker.access(refresh)
    assert second != first and exchange.calls == 2
    broker.rejected(refresh, second, error)  # rejected again at once: back off,
    assert broker.access(refresh) == second  # and keep it meanwhile (others may take it)
    assert exchange.calls == 2
    now[0] = 11.6  # a second 401 in a row: 1 s after the last exchange
    assert broker.access(refresh) not in (first, second) and exchange.calls == 3


WALL0 = 1_700_000_000.0  # the virtual wall clock's start


class ClaimingExchange:
    """An exchange in virtual time whose tokens claim ``exp(wall)``; records when
    (virtual seconds) it was called."""

    def __init__(self, now: list[float], exp: Callable[[float], object]) -> None:
        self.now = now
        self.exp = exp
        self.times: list[float] = []

    def __call__(self, refresh: RefreshToken) -> str:
        self.times.append(self.now[0])
        return jwt({"exp": self.exp(WALL0 + self.now[0]), "n": len(self.times)})


@pytest.mark.parametrize(
    "exp",
    [
        lambda wall: wall - 3600,
        lambda _wall: -1,
        lambda _wall: 0,
        lambda wall: wall + 1,
        lambda _wall: 32503680000,  # the year 3000
        lambda _wall: 10**400,
        lambda _wall: float("nan"),
    ],
    ids=["past", "negative", "zero", "one-second", "year-3000", "huge-int", "nan"],
)
def test_tokens_of_unknown_lifetime_cost_a_few_exchanges_a_minute_at_most(
    exp: Callable[[float], object],
) -> None:
    """Ten minutes of polls, one a second, each given a token (none fails), while
    the token server's `exp` claims are nonsense: 6 exchanges, not one a poll."""
    now = [0.0]
    exchange = ClaimingExchange(now, exp)
    broker = TokenBroker(exchange, clock=lambda: now[0], wall=lambda: WALL0 + now[0])
    refresh = RefreshToken(REFRESH)
    for _ in range(600):
        broker.access(refresh)
        expiry = broker.expiry(refresh)
        assert expiry is not None and WALL0 + now[0] < expiry <= WALL0 + now[0] + DEFAULT_LIFETIME
        now[0] += 1.0
    assert exchange.times == [0, 15, 45, 105, 225, 465]
    assert max(sum(t <= u < t + 60 for u in exchange.times) for t in exchange.times) == 3


def test_a_token_of_known_lifetime_ends_the_unknown_streak() -> None:
    now = [0.0]
    exchange = ClaimingExchange(now, lambda _wall: -1)
    broker = TokenBroker(exchange, clock=lambda: now[0], wall=lambda: WALL0 + now[0])
    refresh = RefreshToken(REFRESH)
    for _ in range(120):
        broker.access(refresh)
        now[0] += 1.0
    assert exchange.times == [0, 15, 45, 105]
    exchange.exp = lambda wall: wall + 3600  # the token server is fixed
    while now[0] < 4000:
        broker.access(refresh)
        now[0] += 1.0
    assert exchange.times == [0, 15, 45, 105, 225, 225 + 2700]  # renewed at 3/4 of an hour
    assert broker.expiry(refresh) == WALL0 + 2925 + 3600
    exchange.exp = lambda _wall: -1  # and broken again: 15 s, 30 s... anew
    while now[0] < 6000:
        broker.access(refresh)
        now[0] += 1.0
    assert exchange.times[6:] == [5625, 5640, 5670, 5730, 5850]


def test_access_token_renewed_ahead_of_expiry_without_a_refused_poll() -> None:
    """The simulator's token issuer (its own tokens and its own verdict on them)
    in virtual time: an hour's tokens, polls every 10 s for five hours, renewed
    when a quarter of the hour is left, so the issuer never refuses a poll."""
    now = [0.0]
    issuer = TokenIssuer({REFRESH: None}, lifetime=3600.0, clock=lambda: WALL0 + now[0])

    def exchange(refresh: RefreshToken) -> str:
        reply = issuer.issue(f"jwt {refresh.reveal()}")
        assert reply.status == 200
        token: str = json.loads(reply.body)["Token"]
        return token

    broker = TokenBroker(exchange, clock=lambda: now[0], wall=lambda: WALL0 + now[0])
    refresh = RefreshToken(REFRESH)
    verdicts = set()
    while now[0] < 5 * 3600:
        verdicts.add(issuer.check(broker.access(refresh).reveal(), 1))
        now[0] += 10.0
    assert verdicts == {0}, "a poll carried a token the issuer refused"
    assert issuer.issued_count() == 7  # at 0, 45 min, 90 min ... 4 h 30
    assert broker.expiry(refresh) == WALL0 + 4.5 * 3600 + 3600


# --- the client over HTTP -----------------------------------------------------------


@pytest.fixture
def issuing() -> Iterator[SimulatorServer]:
    fleet = Fleet(FleetSpec(seed=5, actors=2, machines_per_actor=2))
    with SimulatorServer(fleet, tokens="static-token-not-for-refresh") as sim:
        sim.issuer.allow(REFRESH)
        yield sim


def make_client(sim: SimulatorServer, timeout: float = 2.0) -> LynxClient:
    return LynxClient(
        LynxConfig(
            base_url=sim.url,
            auth_url=sim.url,
            timeout=timeout,
            max_retries=0,
            rate_limit_per_second=0,
        ),
        observer=lambda _code, _seconds: None,
        rate_limiter=RateLimiter(0),
        token_gate=TokenGate(),
        stop=threading.Event(),
        rng=random.Random(3),
    )


def exchanges(sim: SimulatorServer) -> list[int]:
    return [r.status for r in sim.requests() if r.path == EXCHANGE]


def data_statuses(sim: SimulatorServer) -> list[int]:
    return [r.status for r in sim.requests() if r.path != EXCHANGE]


def test_one_exchange_serves_the_polls_and_only_the_exchange_sees_the_refresh_token(
    issuing: SimulatorServer,
) -> None:
    issuing.issuer.lifetime = 3600.0
    client = make_client(issuing)
    refresh = RefreshToken(REFRESH, issuing.url)
    actor = issuing.fleet.actor_ids()[0]
    for _ in range(5):
        assert fetch_dashboard(client, actor, window(), refresh).status == 200
    assert data_statuses(issuing) == [200] * 5
    assert exchanges(issuing) == [200]
    expiry = client.token_expiry(refresh)
    assert expiry is not None and time.time() + 3590 < expiry < time.time() + 3601
    # The refresh token goes to the exchange only (scheme "jwt"), never to data.
    for record in issuing.requests():
        scheme, _, value = (record.authorization or "").partition(" ")
        if record.path == EXCHANGE:
            assert (scheme, value) == ("jwt", REFRESH)
        else:
            assert scheme == "Bearer" and value != REFRESH and value.count(".") == 2


def test_a_401_forces_one_renewal_and_the_poll_still_succeeds(issuing: SimulatorServer) -> None:
    client = make_client(issuing)
    refresh = RefreshToken(REFRESH, issuing.url)
    actor = issuing.fleet.actor_ids()[0]
    assert fetch_dashboard(client, actor, window(), refresh).status == 200
    issuing.issuer.revoke_access()  # the vendor revokes access tokens before exp
    answer = fetch_dashboard(client, actor, window(), refresh)
    assert answer.status == 200 and answer.attempts == 1
    trail = [(r.path == EXCHANGE, r.status) for r in issuing.requests()]
    assert trail == [(True, 200), (False, 200), (False, 401), (True, 200), (False, 200)]


def test_a_refused_exchange_is_auth_and_exchanges_stay_bounded(issuing: SimulatorServer) -> None:
    issuing.issuer.fail_status = 503
    client = make_client(issuing)
    refresh = RefreshToken(REFRESH, issuing.url)
    actor = issuing.fleet.actor_ids()[0]
    deadline = time.monotonic() + 3.2
    failures = 0
    while time.monotonic() < deadline:
        with pytest.raises(AuthError) as caught:
            fetch_dashboard(client, actor, window(), refresh)
        assert caught.value.reason == "auth"
        assert "access token exchange failed: HTTP 503" in str(caught.value)
        assert "Token exchange refused" in str(caught.value)  # the vendor's message
        failures += 1
        time.sleep(0.02)
    assert failures >= 50
    # 1 s, then 2 s of back-off: three exchanges in 3.2 s, never one per poll.
    assert exchanges(issuing) == [503, 503, 503]
    assert data_statuses(issuing) == []
    assert client.token_expiry(refresh) == 0.0


def test_an_exchange_timeout_is_the_transport_reason(issuing: SimulatorServer) -> None:
    issuing.latency = 1.0
    client = make_client(issuing, timeout=0.3)
    with pytest.raises(TimeoutError_):
        fetch_dashboard(
            client, issuing.fleet.actor_ids()[0], window(), RefreshToken(REFRESH, issuing.url)
        )


def test_the_simulator_refuses_expired_access_tokens(issuing: SimulatorServer) -> None:
    issuing.issuer.lifetime = 0.3
    token = requests.post(
        f"{issuing.url}{EXCHANGE}", headers={"Authorization": f"jwt {REFRESH}"}, timeout=5
    ).json()["Token"]
    url = f"{issuing.url}/v1/actors/{issuing.fleet.actor_ids()[0]}/evDashboard"
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, params=window(), headers=auth, timeout=5).status_code == 200
    time.sleep(0.35)
    late = requests.get(url, params=window(), headers=auth, timeout=5)
    assert late.status_code == 401
    assert late.json() == {"message": "Unauthorized", "isUserError": False, "errorKey": None}
    for headers in ({"Authorization": "jwt wrong"}, {"Authorization": f"Bearer {REFRESH}"}, {}):
        refused = requests.post(f"{issuing.url}{EXCHANGE}", headers=headers, timeout=5)
        assert refused.status_code == 401
    assert requests.get(f"{issuing.url}{EXCHANGE}", timeout=5).status_code == 405


# --- config -------------------------------------------------------------------------


def test_config_takes_refresh_tokens_globally_and_per_actor(tmp_path: Path) -> None:
    (tmp_path / "refresh").write_text("\ufeff" + REFRESH + "\n", encoding="utf-8")
    config = parse_config(
        "lynx: {refresh_token_file: refresh, auth_url: 'http://auth.example/'}\n"
        "actors: [{id: 1}, {id: 2, refresh_token: other-refresh}, {id: 3, token: static}]\n",
        environ={},
        base_dir=tmp_path,
    )
    first, second, third = (config.token_for(a) for a in config.actors)
    assert first == RefreshToken(REFRESH, "http://auth.example")
    assert second == RefreshToken("other-refresh", "http://auth.example")
    assert not isinstance(third, RefreshToken) and third.reveal() == "static"
    assert REFRESH not in repr(config) and "other-refresh" not in repr(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "lynx: {token: a, refresh_token: b}",
            "lynx: set either a token (token, token_file) or a refresh token, not both",
        ),
        (
            "lynx: {refresh_token: a, refresh_token_file: f}",
            "lynx: set either refresh_token or refresh_token_file, not both",
        ),
        ("lynx: {refresh_token_file: missing}", "lynx.refresh_token_file: cannot read"),
        ("lynx: {refresh_token: 'two words'}", "lynx.refresh_token: the token holds whitespace"),
        ("lynx: {refresh_token: a, auth_url: 'ftp://x'}", "lynx.auth_url: must be an http"),
        ("lynx: {refresh_token: a, auth_url: 'https://u:p@x'}", "lynx.auth_url: must be a plain"),
    ],
)
def test_config_check_names_the_key_and_never_the_refresh_token(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text + "\nactors: [{id: 1}]\n", encoding="utf-8")
    result = config_check(f"--config.file={config}")
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert "two words" not in result.stdout + result.stderr


def test_an_actor_may_not_have_both_token_kinds() -> None:
    with pytest.raises(Exception, match=r"actors\[0\]: set either token or refresh_token"):
        parse_config("actors: [{id: 1, token: a, refresh_token: b}]", environ={})


# --- a real exporter ----------------------------------------------------------------


def refresh_config(tmp_path: Path, sim: SimulatorServer, **lynx: str) -> dict[str, object]:
    document = simulator_config(sim.url, [{"id": a} for a in sim.fleet.actor_ids()])
    settings = document["lynx"]
    del settings["token"]
    settings.update(auth_url=sim.url, **lynx)
    return document


def scraped(exporter: ExporterProcess, name: str, **labels: str) -> dict[str, float]:
    return {
        dict(k[1])["actor_id"]: v
        for k, v in select(exporter.series(), name, **labels).items()
        if "actor_id" in dict(k[1])
    }


def test_a_rejected_refresh_token_marks_targets_down_and_fires_the_alert(
    tmp_path: Path, issuing: SimulatorServer
) -> None:
    document = refresh_config(tmp_path, issuing, refresh_token="revoked-refresh")
    path = write_config(tmp_path / "config.yaml", document)
    with running_exporter(path) as exporter:
        wait_for(
            lambda: (
                min(scraped(exporter, "nayax_ev_poll_errors_total", reason="auth").values()) > 0
            ),
            timeout=15,
            what="auth errors for every actor",
        )
        time.sleep(2.5)  # several poll rounds (interval 1 s) under back-off
        up = select(exporter.series(), "nayax_ev_target_up")
        expiry = scraped(exporter, "nayax_ev_access_token_expiry_timestamp_seconds")
        logs = exporter.logs()
    assert up and set(up.values()) == {0.0}
    assert expiry == {str(a): 0.0 for a in issuing.fleet.actor_ids()}
    downs = [e for e in logs if e.get("event") == "target down"]
    assert downs and {e["reason"] for e in downs} == {"auth"}
    assert all("access token exchange failed: HTTP 401" in e["error"] for e in downs)
    # One refresh token for every target: the exchanges are few and spaced (back-off
    # 1 s, 2 s, 4 s...), never one per poll.
    assert 2 <= len(exchanges(issuing)) <= 4
    assert data_statuses(issuing) == []
    assert_alert_fires(tmp_path, expiry)


def assert_alert_fires(tmp_path: Path, expiry: dict[str, float]) -> None:
    """promtool evaluates the real alert rule over the values the exporter exposed."""
    series = [
        {
            "series": "nayax_ev_access_token_expiry_timestamp_seconds"
            f'{{job="nayax-ev", instance="exporter:9877", actor_id="{actor}"}}',
            "values": f"{value:g}x10",
        }
        for actor, value in sorted(expiry.items())
    ]
    expected = [
        {
            "exp_labels": {
                "severity": "critical",
                "job": "nayax-ev",
                "instance": "exporter:9877",
                "actor_id": actor,
            },
            "exp_annotations": {
                "summary": "The exporter cannot renew its Nayax Lynx access token.",
                "description": f"The access token for actor {actor} expires in -6m 0s"
                " (negative: expired or never obtained) and exchanging the refresh token"
                " for a new one keeps failing.",
                "runbook_url": RUNBOOK + "nayaxevaccesstokenrenewalfailing",
            },
        }
        for actor in sorted(expiry)
    ]
    test = {
        "rule_files": [str(REPO / "prometheus" / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "alertname": "NayaxEVAccessTokenRenewalFailing",
                        "eval_time": "6m",
                        "exp_alerts": expected,
                    }
                ],
            }
        ],
    }
    path = tmp_path / "alert_test.yml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    run_promtool("test", "rules", str(path))


def test_a_rotated_refresh_token_file_is_picked_up_on_reload(
    tmp_path: Path, issuing: SimulatorServer
) -> None:
    secret = tmp_path / "refresh"
    secret.write_text(REFRESH + "\n", encoding="utf-8")
    document = refresh_config(tmp_path, issuing, refresh_token_file=str(secret))
    path = write_config(tmp_path / "config.yaml", document)
    with running_exporter(path, "--web.enable-lifecycle") as exporter:

        def all_up() -> bool:
            return set(select(exporter.series(), "nayax_ev_target_up").values()) == {1.0}

        wait_for(all_up, timeout=15, what="targets up on the first refresh token")
        # The operator's order: the new token is valid and in the file, the exporter
        # reloads, then the old one is revoked. Revoking first would let a poll still
        # on the old plan meet a 401 and exchange the old token, before the reload.
        issuing.issuer.allow("rotated-refresh")
        secret.write_text("rotated-refresh\n", encoding="utf-8")
        issuing.clear_requests()
        answer = requests.post(f"{exporter.url}/-/reload", timeout=10)
        assert answer.status_code == 200, answer.text
        wait_for(
            lambda: any(
                r.path == EXCHANGE and r.authorization == "jwt rotated-refresh"
                for r in issuing.requests()
            ),
            timeout=10,
            what="an exchange with the rotated refresh token",
        )
        time.sleep(0.5)  # polls the old plan had in flight have ended
        issuing.issuer.revoke(REFRESH)  # the old refresh token and its access tokens
        wait_for(all_up, timeout=15, what="targets up after the reload")
        wait_for(
            lambda: data_statuses(issuing).count(200) >= 4, timeout=10, what="polls after reload"
        )
        logs = "\n".join(exporter.log_lines)
    used = {r.authorization for r in issuing.requests() if r.path == EXCHANGE}
    assert used == {"jwt rotated-refresh"}
    assert 401 not in data_statuses(issuing)
    for secret_text in (REFRESH, "rotated-refresh"):
        assert secret_text not in logs


def test_401s_between_good_answers_do_not_cost_an_exchange_a_poll() -> None:
    """An endpoint that always refuses the access tokens (another endpoint takes
    them): renewals forced by its 401s back off although good answers come between."""
    now = [0.0]
    exchange = FakeExchange()
    broker = TokenBroker(exchange, clock=lambda: now[0])
    refresh = RefreshToken(REFRESH)
    error = AuthError("HTTP 401", status=401)
    for _ in range(600):  # ten minutes of polls, one every second, each meeting a 401
        broker.rejected(refresh, broker.access(refresh), error)
        now[0] += 1.0
    # 1 s, 2 s, 4 s ... 256 s, then 300 s: about ten exchanges, not 600.
    assert 8 <= exchange.calls <= 12


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"Token": null}',
        '{"Token": "two\\nlines"}',
        '{"Token": "' + "x" * 20_000 + '"}',
        "<html>login</html>",
        '{"message": "Forbidden scope", "errorKey": "Scope", "correlationId": "c-1"}',
        '{"Token": "e"}',
        '{"Token": "too-short-token"}',
        '{"Token": "an access token with spaces in it"}',
        '{"Token": "a-quote-\\"-in-the-access-token"}',
        '{"Token": 12345678901234567890}',
        '{"Token": "too-short-token", "message": "too-short-token", "errorKey": "K"}',
    ],
    ids=[
        "empty",
        "null",
        "newline",
        "huge",
        "html",
        "failure-object",
        "one-letter",
        "fifteen-chars",
        "spaces",
        "quote",
        "number",
        "echoed",
    ],
)
def test_an_exchange_answer_without_a_usable_token_is_auth(body: str) -> None:
    client = LynxClient(
        LynxConfig(base_url="https://data.test", auth_url="https://auth.test", max_retries=0),
        observer=lambda _code, _seconds: None,
        rate_limiter=RateLimiter(0),
        token_gate=TokenGate(),
        stop=threading.Event(),
    )
    with responses.RequestsMock() as mock:
        mock.post(f"https://auth.test{EXCHANGE}", status=200, body=body)
        with pytest.raises(AuthError) as caught:
            fetch_dashboard(client, 1, window(), RefreshToken(REFRESH, "https://auth.test"))
        assert len(mock.calls) == 1  # the exchange only: no data request without a token
    assert "access token exchange answered HTTP 200 without a usable token" in str(caught.value)
    assert REFRESH not in str(caught.value) and "x" * 100 not in str(caught.value)
    assert "too-short-token" not in str(caught.value)  # an unusable token is never quoted


def test_a_token_server_answering_one_letter_fails_the_exchange_and_backs_off(
    issuing: SimulatorServer,
) -> None:
    issuing.issuer.answer = "e"
    client = make_client(issuing)
    refresh = RefreshToken(REFRESH, issuing.url)
    for _ in range(5):
        with pytest.raises(AuthError) as caught:
            fetch_dashboard(client, issuing.fleet.actor_ids()[0], window(), refresh)
        assert caught.value.reason == "auth"
        assert "exchange answered HTTP 200 without a usable token" in str(caught.value)
    assert exchanges(issuing) == [200]  # then 1 s of back-off, as for any failed exchange
    assert data_statuses(issuing) == []  # "e" never went out as a Bearer token
    assert client.token_expiry(refresh) == 0.0


@pytest.mark.parametrize("exp", [-1.0, 1_000_000.0, 32503680000.0, float("nan")])
def test_a_token_with_an_unusable_exp_serves_with_a_sane_expiry(
    issuing: SimulatorServer, exp: float
) -> None:
    issuing.issuer.exp = exp  # the claim only: the simulator takes the token for 24 h
    client = make_client(issuing)
    refresh = RefreshToken(REFRESH, issuing.url)
    for _ in range(3):
        assert (
            fetch_dashboard(client, issuing.fleet.actor_ids()[0], window(), refresh).status == 200
        )
    assert exchanges(issuing) == [200]
    expiry = client.token_expiry(refresh)
    assert expiry is not None
    assert time.time() + DEFAULT_LIFETIME - 60 < expiry <= time.time() + DEFAULT_LIFETIME


def test_a_token_server_answering_one_letter_leaves_json_logs_json(
    tmp_path: Path, issuing: SimulatorServer
) -> None:
    """The probe's case end to end: ``{"Token": "e"}`` is a failed exchange; no
    log line has an "e" redacted (every one still parses as JSON), polls fail
    without a request, and exchanges back off."""
    issuing.issuer.answer = "e"
    document = refresh_config(tmp_path, issuing, refresh_token=REFRESH)
    path = write_config(tmp_path / "config.yaml", document)
    with running_exporter(path) as exporter:
        wait_for(
            lambda: len(exchanges(issuing)) >= 2,
            timeout=15,
            what="a second exchange, after the back-off",
        )
        errors = sum(scraped(exporter, "nayax_ev_poll_errors_total", reason="auth").values())
        logs = exporter.logs()  # json.loads of every line
        lines = list(exporter.log_lines)
    downs = [e for e in logs if e.get("event") == "target down"]
    assert downs and all("without a usable token" in e["error"] for e in downs)
    assert not any("<redacted>" in line for line in lines)
    assert data_statuses(issuing) == []
    assert errors > len(exchanges(issuing))  # failed polls, most without an exchange
