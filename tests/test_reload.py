"""Reload, by SIGHUP and by ``POST /-/reload``, against a real exporter process.

- A valid new config is applied: targets are added and removed (the removed ones'
  series vanish), and ``lynx.token_file`` is re-read, so a token rotated in the
  back office (the simulator then rejects the old one with 401) works again after
  the reload, and only after it.
- An invalid config leaves the running one in place (targets keep updating), logs
  every error with its key path, sets ``nayax_ev_config_last_reload_successful`` to
  0 without touching the success timestamp, and ``POST /-/reload`` answers 500 with
  the errors. A later valid reload sets it back to 1.
- A reload that fails in any other way (MemoryError, RecursionError, an OSError,
  a bug) is reported the same way, naming only the error's class, and keeps the
  running config (tests/test_special_files.py has the files that used to cause
  them, through a real process).
"""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import requests

from exporter.app import RELOAD_ERROR, Exporter, Options
from exporter.config import Config, parse_config
from exporter.logs import SecretScrubber, configure
from exporter.lynx.client import LynxClient
from exporter.lynx.ratelimit import TokenGate
from exporter.polling.plan import Plan, reusing
from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from exporter.targets import build_targets
from tests.harness import (
    ExporterProcess,
    SeriesKey,
    running_exporter,
    wait_for,
    write_config,
)
from tests.test_fault_matrix import (
    TargetId,
    assert_clean_logs,
    last_success,
    matrix_config,
    one,
    parsed_logs,
    poll_errors,
    target_up,
)

OLD_TOKEN = "tkn-rotating-old"
NEW_TOKEN = "tkn-rotating-new"
TOKEN_B = "tkn-actor-b"
TOKEN_C = "tkn-actor-c"

# Two problems in two places; both must be reported with their key paths.
INVALID_CONFIG = """\
lynx:
  base_url: {base_url}
  token_file: token.txt
poll:
  interval: every now and then
actors:
  - id: {actor_a}
  - id: not-a-number
"""
INVALID_KEY_PATHS = ("poll.interval", "actors[1].id")


def reload_successful(series: Mapping[SeriesKey, float]) -> float | None:
    return one(series, "nayax_ev_config_last_reload_successful")


def reload_timestamp(series: Mapping[SeriesKey, float]) -> float | None:
    return one(series, "nayax_ev_config_last_reload_success_timestamp_seconds")


def has_series_of(series: Mapping[SeriesKey, float], actor_id: int) -> bool:
    """Any data or target series of the actor (its poll-error counters may stay)."""
    return any(
        dict(labels).get("actor_id") == str(actor_id)
        for (name, labels) in series
        if not name.startswith("nayax_ev_poll_errors")
    )


def trigger(exporter: ExporterProcess, how: str) -> requests.Response | None:
    if how == "sighup":
        exporter.signal(signal.SIGHUP)
        return None
    return requests.post(f"{exporter.url}/-/reload", timeout=10)


def config_document(base_url: str, fleet: Fleet, actors: list[int]) -> dict[str, Any]:
    """Actor A (the first) uses the global token file; the others carry their own."""
    a, b, c = fleet.actor_ids()
    own = {b: TOKEN_B, c: TOKEN_C}
    entries: list[dict[str, Any]] = []
    for actor_id in actors:
        entry: dict[str, Any] = {"id": actor_id}
        if actor_id != a:
            entry["token"] = own[actor_id]
        entries.append(entry)
    document = matrix_config(base_url, entries)
    del document["lynx"]["token"]
    document["lynx"]["token_file"] = "token.txt"
    return document


@pytest.mark.parametrize("how", ["sighup", "http"])
def test_reload(tmp_path: Path, how: str) -> None:
    fleet = Fleet(FleetSpec(seed=5, actors=3, machines_per_actor=1, silence_period_s=1e9))
    a, b, c = fleet.actor_ids()
    tokens = {a: OLD_TOKEN, b: TOKEN_B, c: TOKEN_C}
    token_file = tmp_path / "token.txt"
    token_file.write_text(OLD_TOKEN + "\n", encoding="utf-8")
    config = tmp_path / "config.yaml"

    def target(actor_id: int) -> TargetId:
        return TargetId(actor_id, "")

    with SimulatorServer(fleet, tokens=tokens) as simulator:
        write_config(config, config_document(simulator.url, fleet, [a, b]))
        with running_exporter(config, "--web.enable-lifecycle") as exporter:

            def up(*actors: int) -> bool:
                series = exporter.series()
                return all(target_up(series, target(x)) == 1.0 for x in actors)

            def reason_count(actor_id: int, reason: str) -> float:
                return poll_errors(exporter.series()).get((str(actor_id), reason), 0.0)

            wait_for(lambda: up(a, b), timeout=15, what="a and b up")
            started = exporter.series()
            assert reload_successful(started) == 1.0
            first_timestamp = reload_timestamp(started)
            assert first_timestamp is not None

            # --- 1. token rotation: 401 until the reload re-reads token_file ---------
            tokens[a] = NEW_TOKEN
            simulator.set_tokens(tokens)  # the old token is revoked upstream
            token_file.write_text(NEW_TOKEN + "\n", encoding="utf-8")  # and rotated here
            wait_for(lambda: reason_count(a, "auth") >= 3, timeout=10, what="401s for a")
            series = exporter.series()
            assert target_up(series, target(a)) == 0.0
            assert target_up(series, target(b)) == 1.0
            assert all(
                r.authorization == f"Bearer {OLD_TOKEN}"
                for r in simulator.requests()
                if r.actor_id == a
            ), "the token file was re-read without a reload"
            simulator.clear_requests()
            answer = trigger(exporter, how)
            assert answer is None or (answer.status_code, answer.text) == (200, "OK\n")
            wait_for(lambda: up(a, b), timeout=10, what="a up with the new token")
            assert {r.authorization for r in simulator.requests() if r.actor_id == a} >= {
                f"Bearer {NEW_TOKEN}"
            }
            rotated = exporter.series()
            assert reload_successful(rotated) == 1.0
            rotated_timestamp = reload_timestamp(rotated)
            assert rotated_timestamp is not None and rotated_timestamp > first_timestamp

            # --- 2. targets added and removed --------------------------------------
            write_config(config, config_document(simulator.url, fleet, [a, c]))
            answer = trigger(exporter, how)
            assert answer is None or answer.status_code == 200
            wait_for(lambda: up(a, c), timeout=10, what="c added and up")
            wait_for(
                lambda: not has_series_of(exporter.series(), b),
                timeout=5,
                what="b's series gone",
            )
            changed = exporter.series()
            assert one(changed, "nayax_ev_targets") == 2.0
            assert target_up(changed, target(b)) is None
            assert last_success(changed, target(b)) is None
            changed_timestamp = reload_timestamp(changed)
            assert changed_timestamp is not None and changed_timestamp > rotated_timestamp
            simulator.clear_requests()
            wait_for(
                lambda: {r.actor_id for r in simulator.requests()} == {a, c},
                timeout=5,
                what="polls of a and c",
            )
            assert b not in {r.actor_id for r in simulator.requests()}  # no longer polled

            # --- 3. an invalid config changes nothing but the reload status --------
            log_start = len(exporter.log_lines)
            config.write_text(
                INVALID_CONFIG.format(base_url=simulator.url, actor_a=a), encoding="utf-8"
            )
            answer = trigger(exporter, how)
            if answer is not None:
                assert answer.status_code == 500
                for key_path in INVALID_KEY_PATHS:
                    assert key_path in answer.text, answer.text
            wait_for(
                lambda: reload_successful(exporter.series()) == 0.0,
                timeout=5,
                what="reload failure reported",
            )
            failed = exporter.series()
            assert reload_timestamp(failed) == changed_timestamp
            assert one(failed, "nayax_ev_targets") == 2.0

            def logged_problems() -> list[str]:
                return [
                    str(e.get("problem"))
                    for e in parsed_logs(exporter.log_lines[log_start:])
                    if e.get("event") == "config reload failed"
                ]

            wait_for(
                lambda: len(logged_problems()) >= len(INVALID_KEY_PATHS),
                timeout=5,
                what="the reload errors in the log",
            )
            for key_path in INVALID_KEY_PATHS:
                assert any(p.startswith(f"{key_path}:") for p in logged_problems()), key_path
            entries = parsed_logs(exporter.log_lines[log_start:])
            assert all(
                e["level"] == "error" for e in entries if e.get("event") == "config reload failed"
            )
            # The running config polls on: a and c keep updating, b stays gone.
            before = {x: last_success(failed, target(x)) or 0.0 for x in (a, c)}
            wait_for(
                lambda: all(
                    (last_success(exporter.series(), target(x)) or 0.0) > before[x] for x in (a, c)
                ),
                timeout=5,
                what="targets still updating",
            )
            assert not has_series_of(exporter.series(), b)

            # --- 4. a valid config again: back to 1 ---------------------------------
            write_config(config, config_document(simulator.url, fleet, [a, c]))
            answer = trigger(exporter, how)
            assert answer is None or answer.status_code == 200
            wait_for(
                lambda: reload_successful(exporter.series()) == 1.0,
                timeout=5,
                what="reload success reported",
            )
            recovered_timestamp = reload_timestamp(exporter.series())
            assert recovered_timestamp is not None and recovered_timestamp > changed_timestamp
            assert up(a, c)
            assert exporter.process is not None and exporter.process.poll() is None

    entries = parsed_logs(exporter.log_lines)
    assert_clean_logs([e for e in entries if e.get("event") != "config reload failed"])
    assert sum(e.get("event") == "config reloaded" for e in entries) == 3


def test_a_reload_holds_one_copy_of_each_unchanged_target() -> None:
    """The store keeps an unchanged target's state, which holds the running
    plan's target object; the new plan reuses that object (and its key) rather
    than a fresh equal copy, so memory and garbage collections see each once."""
    text = (
        "lynx: {token: tkn}\n"
        "machine_status: {enabled: false}\n"
        "actors: [{id: 1, name: One, machines: [{id: 5}]}, {id: 2, name: %s}]\n"
    )
    running = parse_config(text % "Two", environ={})
    old = Plan(
        running,
        {t.key: t for t in build_targets(running)},
        cast(LynxClient, None),
        TokenGate(),
    )
    renamed = build_targets(parse_config(text % "Deux", environ={}))
    reused = reusing(renamed, old)
    assert list(reused) == [t.key for t in renamed]
    for key, target in reused.items():
        before = old.targets[key]
        if target.actor_id == 1:  # unchanged: the very objects the store holds
            assert target is before
            assert next(k for k in old.targets if k == key) is next(k for k in reused if k == key)
        else:  # renamed: the new definition
            assert target is not before and target.actor == "Deux"
    assert reusing(renamed, None) == {t.key: t for t in renamed}


@pytest.mark.parametrize(
    "failure",
    [MemoryError(), RecursionError(), OSError(5, "TKN-in-text"), KeyError("TKN-in-text")],
    ids=lambda e: type(e).__name__,
)
def test_a_reload_that_fails_in_any_way_keeps_the_running_config(failure: Exception) -> None:
    """Not only ConfigError: whatever the load raises is logged as ``config
    reload failed`` (its class, never its text), sets the gauge to 0 and is
    returned for ``POST /-/reload``; the running config stays. The reload thread
    is then free for the next reload, which applies."""
    running = parse_config(
        "lynx: {token: tkn, base_url: 'http://127.0.0.1:1'}\nactors: [{id: 1}]\n", environ={}
    )
    renamed = parse_config(
        "lynx: {token: tkn, base_url: 'http://127.0.0.1:1'}\nactors: [{id: 1, name: One}]\n",
        environ={},
    )
    loads: list[Config | Exception] = [running, failure, renamed]

    def load() -> Config:
        outcome = loads.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    stream = io.StringIO()
    scrubber = SecretScrubber()
    exporter = Exporter(load, configure("info", "json", scrubber, stream), scrubber, Options())
    registry = exporter.stats.registry
    try:
        problem = f"{RELOAD_ERROR} ({type(failure).__name__})"
        assert exporter.reload() == [problem]
        assert exporter.config is running
        assert registry.get_sample_value("nayax_ev_config_last_reload_successful") == 0.0
        assert exporter.reload() == ()  # the reload thread took the next one
        assert exporter.config is renamed
        assert registry.get_sample_value("nayax_ev_config_last_reload_successful") == 1.0
    finally:
        exporter.stop()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [e for e in entries if e["event"] == "config reload failed"]
    assert [(e["level"], e["problem"]) for e in failed] == [("error", problem)]
    assert "TKN-in-text" not in stream.getvalue()
