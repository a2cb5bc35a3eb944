"""The Lynx token never shows: not in a log line, /metrics, the landing page, a
reload or ``--config.check`` answer, nor in any exception the client raises.

The token is recognisable (``TKN-5ecret-Zz9``) and the simulator is told to
reflect the request's Authorization header back wherever it can (error bodies,
HTML pages, JSON fields), so a leak anywhere on the way would show. Every fault of
the fault matrix is replayed, and the output of everything is scanned.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog

from exporter.config import LynxConfig, Secret, parse_config
from exporter.kinds.ev_dashboard import parse_payload
from exporter.logs import MIN_SECRET_CHARS, REDACTED, SecretScrubber
from exporter.lynx.client import LynxClient, LynxError
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.targets import build_targets
from tests.harness import (
    ExporterProcess,
    config_check,
    fetch_dashboard,
    running_exporter,
    wait_for,
    write_config,
)
from tests.test_fault_matrix import ROWS, assert_clean_logs, parsed_logs, unreachable_base_url

SECRET = "TKN-5ecret-Zz9"  # every token below contains it; none may ever show


def token_of(index: int) -> str:
    return f"{SECRET}-{index}"


def assert_no_secret(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    assert SECRET not in text, f"the token leaked into {where}: ...{_around(text)}..."


def _around(text: str) -> str:
    at = text.find(SECRET)
    return text[max(0, at - 80) : at + 40]


def leaky_faults() -> list[Fault]:
    """Every row's fault, with the upstream reflecting our Authorization header."""
    faults = [replace(row.fault, echo_authorization=True) for row in ROWS]
    # Hangs as short as possible while still longer than the test timeout.
    return [
        replace(f, seconds=min(f.seconds, 1.0)) if f.kind is FaultKind.HANG else f for f in faults
    ]


# --- the running exporter ---------------------------------------------------------


def scan_http(exporter: ExporterProcess, where: str) -> None:
    base = exporter.url
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        headers = {"Accept-Encoding": "identity"}
        if accept:
            headers["Accept"] = accept
        response = requests.get(f"{base}/metrics", headers=headers, timeout=5)
        assert response.status_code == 200
        assert_no_secret(response.content, f"/metrics ({accept or 'text'}) {where}")
    raw = requests.get(
        f"{base}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True
    )
    assert_no_secret(gzip.decompress(raw.raw.read()), f"gzipped /metrics {where}")
    for path in ("/", "/-/healthy", "/-/ready", "/-/reload"):
        assert_no_secret(requests.get(f"{base}{path}", timeout=5).content, f"{path} {where}")


def exchanges_granted(simulator: SimulatorServer) -> int:
    return sum(r.path == "/v1/issue-access-token" and r.status == 200 for r in simulator.requests())


def answered_twice(simulator: SimulatorServer, since: int, actors: set[int]) -> bool:
    """Each of ``actors`` got its fault at least twice since request ``since``."""
    records = simulator.requests()[since:]
    return all(sum(r.actor_id == a and r.fault is not None for r in records) >= 2 for a in actors)


def test_a_running_exporter_never_shows_the_token(tmp_path: Path) -> None:
    faults = leaky_faults()
    actors = 9  # faults run side by side, one actor each, in rounds
    fleet = Fleet(FleetSpec(seed=3, actors=actors, machines_per_actor=1, silence_period_s=1e9))
    ids = fleet.actor_ids()
    tokens = {actor_id: token_of(i) for i, actor_id in enumerate(ids)}
    with SimulatorServer(fleet, tokens=tokens) as simulator:
        document: dict[str, Any] = {
            "lynx": {
                "base_url": simulator.url,
                "token": token_of(99),  # a global token too, unused by the actors
                "timeout": "500ms",
                "max_retries": 1,
                "retry_backoff": "20ms",
                "retry_backoff_max": "1s",
                "rate_limit_per_second": 0,
                "max_concurrency": 8,
            },
            "poll": {"interval": "250ms", "stale_after": "60s"},
            "actors": [
                {
                    "id": actor_id,
                    "token": tokens[actor_id],
                    "machines": [{"id": fleet.machines(actor_id)[0].id}],
                }
                for actor_id in ids
            ],
        }
        config = write_config(tmp_path / "config.yaml", document)
        with running_exporter(config, "--log.level=debug", "--web.enable-lifecycle") as exporter:
            wait_for(exporter.ready, timeout=15, what="every target polled")
            for start in range(0, len(faults), actors):
                round_faults = faults[start : start + actors]
                round_start = len(simulator.requests())
                for actor_id, fault in zip(ids, round_faults, strict=False):
                    simulator.add_fault(replace(fault, actor_id=actor_id))
                faulted = set(ids[: len(round_faults)])
                wait_for(
                    partial(answered_twice, simulator, round_start, faulted),
                    timeout=20,
                    what="every fault answered",
                )
                time.sleep(1.0)  # the slowest (hanging) polls complete
                # Read while the faults are fresh: last errors show on the landing page.
                scan_http(exporter, f"during faults {start}..{start + len(round_faults)}")
                simulator.clear_faults()

            # A reload with a bad config that carries the tokens: the answer names
            # the problems, never the values.
            bad = dict(document, poll={"interval": "soon"})
            write_config(config, bad)
            answer = requests.post(f"{exporter.url}/-/reload", timeout=10)
            assert answer.status_code == 500
            assert_no_secret(answer.content, "the failed reload's answer")
            scan_http(exporter, "at the end")
        assert exporter.process is not None
    assert exporter.process.returncode == 0
    echoed = [r for r in simulator.requests() if r.fault is not None]
    assert len(echoed) >= 2 * len(faults)  # the leaky answers did go out
    for line in exporter.log_lines:
        assert_no_secret(line, "a log line")
    assert_no_secret(exporter.stdout, "stdout")
    entries = parsed_logs(exporter.log_lines)
    assert any(e.get("event") == "target down" for e in entries)
    assert_clean_logs([e for e in entries if e.get("event") != "config reload failed"])


# --- the client's exceptions --------------------------------------------------------


def exception_texts(error: BaseException) -> Iterator[str]:
    """Everything an exception could print, down its whole chain (suppressed too)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (repr(arg) for arg in current.args)
        yield "".join(traceback.format_exception(current))
        pending.extend(
            e
            for e in (current.__cause__, current.__context__, *current.args)
            if isinstance(e, BaseException)
        )


def make_client(base_url: str, token: Secret) -> LynxClient:
    return LynxClient(
        LynxConfig(
            base_url=base_url,
            token=token,
            timeout=0.5,
            max_retries=1,
            retry_backoff=0.01,
            retry_backoff_max=1.0,
            rate_limit_per_second=0,
        ),
        observer=lambda _code, _seconds: None,
        rate_limiter=RateLimiter(0),
        token_gate=TokenGate(),
        stop=threading.Event(),
        rng=random.Random(1),
    )


def outcome_texts(client: LynxClient, actor_id: int, token: Secret) -> list[str]:
    """What fetching (and interpreting) one answer can say about itself."""
    try:
        window = {"StartDate": "2024-03-01T00:00:00Z", "EndDate": "2024-03-02T00:00:00Z"}
        answer = fetch_dashboard(
            client, actor_id, {"MachineNumber": "EV-000-0000", **window}, token
        )
    except LynxError as error:
        return list(exception_texts(error))
    texts = [repr(answer), str(answer.payload)]
    try:
        reading = parse_payload(
            answer.payload, duration_unit="seconds", energy_unit="auto", want_operator=True
        )
    except BadPayloadError as error:
        return [*texts, *exception_texts(error)]
    return [*texts, repr(reading), *(p.detail for p in reading.problems)]


@pytest.fixture(scope="module")
def leaky_simulator() -> Iterator[SimulatorServer]:
    fleet = Fleet(FleetSpec(seed=3, actors=1, machines_per_actor=1))
    with SimulatorServer(fleet, tokens=token_of(0)) as simulator:
        yield simulator


@pytest.mark.parametrize("fault", leaky_faults(), ids=[row.id for row in ROWS])
def test_client_errors_never_contain_the_token(
    leaky_simulator: SimulatorServer, fault: Fault
) -> None:
    simulator = leaky_simulator
    simulator.clear_faults()
    simulator.clear_requests()
    simulator.add_fault(fault)
    token = Secret(token_of(0))
    client = make_client(simulator.url, token)
    try:
        texts = outcome_texts(client, simulator.fleet.actor_ids()[0], token)
    finally:
        client.close()
        simulator.clear_faults()
    assert any(r.fault is not None for r in simulator.requests())  # the fault did hit
    assert texts
    for text in texts:
        assert_no_secret(text, f"the client's outcome for {fault.kind}")


@pytest.mark.parametrize("kind", ["connection_refused", "unresolvable_host"])
def test_unreachable_errors_never_contain_the_token(kind: str) -> None:
    token = Secret(SECRET)
    with unreachable_base_url(kind) as base_url:
        client = make_client(base_url, token)
        with pytest.raises(LynxError) as caught:
            fetch_dashboard(client, 1, {}, token)
        client.close()
    assert caught.value.reason == "connection"
    for text in exception_texts(caught.value):
        assert_no_secret(text, f"the {kind} error")


# --- configuration ------------------------------------------------------------------

GOOD_CONFIG = f"""\
lynx:
  token: {token_of(1)}
actors:
  - id: 1
    token: {token_of(2)}
  - id: 2
"""


def test_config_repr_and_targets_redact_the_token() -> None:
    config = parse_config(GOOD_CONFIG, environ={})
    assert config.token_for(config.actors[0]).reveal() == token_of(2)  # really loaded
    texts = [repr(config), str(config), f"{config}", repr(config.lynx), repr(config.actors)]
    texts += [repr(target) for target in build_targets(config)]
    for text in texts:
        assert_no_secret(text, "a config repr")
    assert "********" in repr(config)
    with pytest.raises(TypeError):
        pickle.dumps(config)  # pickling would carry the value out


BAD_CONFIGS = {
    "other_errors": (
        f"lynx:\n  token: {token_of(1)}\n  timeout: soon\n  colour: blue\n"
        f"poll:\n  interval: -1\nactors:\n  - id: 1\n    token: {token_of(2)}\n  - id: 1\n"
    ),
    "token_and_token_file": (
        f"lynx:\n  token: {token_of(1)}\n  token_file: elsewhere.txt\nactors:\n  - id: 1\n"
    ),
    "token_not_a_string": f"lynx:\n  token: [{token_of(1)}]\nactors:\n  - id: 1\n",
    "token_under_a_misspelt_key": f"lynx:\n  tokn: {token_of(1)}\nactors:\n  - id: 1\n",
    "actor_token_not_a_string": (
        f"lynx:\n  token: {token_of(1)}\nactors:\n  - id: 1\n    token: {{x: {token_of(2)}}}\n"
    ),
    "credentials_in_base_url": (
        f"lynx:\n  base_url: https://user:{token_of(1)}@lynx.example\n"
        f"  token: {token_of(2)}\nactors:\n  - id: 1\n"
    ),
    "unterminated_quote": f'lynx:\n  token: "{token_of(1)}\nactors:\n  - id: 1\n',
    # The token pasted where the path to a file holding it belongs: the error
    # must name the key, not quote the "path".
    "token_in_token_file": f"lynx:\n  token_file: {token_of(1)}\nactors:\n  - id: 1\n",
}


@pytest.mark.parametrize("text", list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_config_check_of_a_bad_config_never_prints_the_token(tmp_path: Path, text: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    result = config_check(f"--config.file={path}")
    assert result.returncode == 1, result
    assert "problem(s) found" in result.stderr
    assert_no_secret(result.stdout + result.stderr, "--config.check output")


def test_config_check_of_a_good_config_never_prints_the_token(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD_CONFIG, encoding="utf-8")
    result = config_check(f"--config.file={path}")
    assert result.returncode == 0, result
    assert "config OK" in result.stdout
    assert_no_secret(result.stdout + result.stderr, "--config.check output")


def test_every_fault_matrix_row_is_replayed() -> None:
    kinds: Sequence[FaultKind] = [f.kind for f in leaky_faults()]
    assert set(kinds) == set(FaultKind)
    assert all(f.echo_authorization for f in leaky_faults())


def test_refresh_and_access_tokens_never_show(tmp_path: Path) -> None:
    """A refresh token and the access tokens exchanged for it (each carrying the
    marker, in its JWT signature): reflected by leaky upstream answers, renewed
    twice after the vendor revokes them (its 401s drive the renewals), then
    refused. Neither kind shows in logs, /metrics, the landing page or stdout."""
    faults = leaky_faults()[:9]
    fleet = Fleet(FleetSpec(seed=4, actors=len(faults), machines_per_actor=1))
    ids = fleet.actor_ids()
    with SimulatorServer(fleet, tokens="static-token-unused") as simulator:
        simulator.issuer.allow(token_of(50))
        simulator.issuer.lifetime = 3600.0
        simulator.issuer.signature = token_of(51)
        document: dict[str, Any] = {
            "lynx": {
                "base_url": simulator.url,
                "auth_url": simulator.url,
                "refresh_token": token_of(50),
                "timeout": "500ms",
                "max_retries": 1,
                "retry_backoff": "20ms",
                "retry_backoff_max": "1s",
                "rate_limit_per_second": 0,
                "max_concurrency": 8,
            },
            "poll": {"interval": "250ms", "stale_after": "60s"},
            "actors": [
                {"id": actor_id, "machines": [{"id": fleet.machines(actor_id)[0].id}]}
                for actor_id in ids
            ],
        }
        config = write_config(tmp_path / "config.yaml", document)
        with running_exporter(config, "--log.level=debug") as exporter:
            wait_for(exporter.ready, timeout=15, what="every target polled")
            start = len(simulator.requests())
            for actor_id, fault in zip(ids, faults, strict=True):
                simulator.add_fault(replace(fault, actor_id=actor_id))
            wait_for(
                partial(answered_twice, simulator, start, set(ids)),
                timeout=20,
                what="every fault answered",
            )
            time.sleep(1.0)
            scan_http(exporter, "during leaky faults on access tokens")
            simulator.clear_faults()
            for renewals in (2, 3):  # the first exchange, then one per revocation
                simulator.issuer.revoke_access()  # every access token now answers 401
                wait_for(
                    lambda n=renewals: exchanges_granted(simulator) >= n,  # type: ignore[misc]
                    timeout=15,
                    what=f"{renewals} access tokens issued",
                )
            simulator.issuer.fail_status = 401  # and no new one is issued
            simulator.issuer.revoke_access()
            wait_for(
                lambda: (
                    not any(  # the evDashboard targets (machine status polls rarely)
                        v
                        for k, v in exporter.series().items()
                        if k[0] == "nayax_ev_target_up" and ("window", "24h") in k[1]
                    )
                ),
                timeout=15,
                what="targets down once the exchange is refused",
            )
            scan_http(exporter, "with the exchange refused")
    exchanged = [r for r in simulator.requests() if r.path == "/v1/issue-access-token"]
    assert sum(r.status == 200 for r in exchanged) >= 3  # renewals did happen
    bearers = {r.authorization for r in simulator.requests() if r.path != exchanged[0].path}
    assert all(SECRET in (b or "") for b in bearers if b and b.startswith("Bearer"))
    for line in exporter.log_lines:
        assert_no_secret(line, "a log line")
    assert_no_secret(exporter.stdout, "stdout")


# --- the log scrubber ------------------------------------------------------------


def rendered(scrubber: SecretScrubber, **event: Any) -> tuple[str, str]:
    """One event as a JSON and as a logfmt line (structlog's renderers, which the
    exporter uses), each passed through ``scrubber``."""
    json_line = structlog.processors.JSONRenderer()(None, "info", dict(event))
    logfmt_line = structlog.processors.LogfmtRenderer()(None, "info", dict(event))
    return scrubber(None, "info", json_line), scrubber(None, "info", logfmt_line)


def test_the_scrubber_never_takes_a_string_too_short_to_be_a_secret() -> None:
    scrubber = SecretScrubber()
    scrubber.set(["e", "x" * (MIN_SECRET_CHARS - 1), SECRET])
    scrubber.add("e")  # an access token {"Token": "e"} would have been
    scrubber.add("level")
    scrubber.add(token_of(7))
    event = {"event": "target down", "level": "warn", "error": f"echo {token_of(7)}"}
    json_line, logfmt_line = rendered(scrubber, **event)
    parsed = json.loads(json_line)  # still JSON: no "e" was replaced
    assert parsed == {**event, "error": f"echo {REDACTED}"}
    assert logfmt_line == f'event="target down" level=warn error="echo {REDACTED}"'
    assert SECRET not in json_line + logfmt_line
    # A secret of exactly the minimum is scrubbed.
    scrubber.add("k" * MIN_SECRET_CHARS)
    assert rendered(scrubber, event="k" * MIN_SECRET_CHARS)[0] == f'{{"event": "{REDACTED}"}}'


def test_the_scrubber_finds_a_secret_as_the_renderers_escape_it() -> None:
    quoted, backslashed = 'pa"ss-' + SECRET, "pa\\ss-" + SECRET
    scrubber = SecretScrubber()
    scrubber.set([quoted, backslashed])
    for secret in (quoted, backslashed):
        for line in rendered(scrubber, event="upstream said", body=f"token {secret} here"):
            assert SECRET not in line and REDACTED in line, line
        plain = scrubber(None, "error", f"problem: {secret}")  # --config.check's lines
        assert plain == f"problem: {REDACTED}"
