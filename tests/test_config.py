"""Config: every key of the contract, every error with its key path, no secret leaks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.config import (
    DEFAULT_BASE_URL,
    ConfigError,
    Secret,
    WindowConfig,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from tests.harness import REPO, config_check

MINIMAL = """
lynx: {token: abc}
actors: [{id: 1}]
"""


def errors_of(text: str, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ=environ or {})
    return caught.value.errors


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config(MINIMAL, environ={})
    assert config.lynx.base_url == DEFAULT_BASE_URL
    assert config.lynx.timeout == 10.0
    assert config.lynx.max_retries == 3
    assert config.lynx.rate_limit_per_second == 5.0
    assert config.lynx.max_concurrency == 4
    assert config.poll.interval == 60.0
    assert config.poll.stale_after == 180.0  # 3 x interval
    assert config.windows == (WindowConfig(name="24h", rolling=86400.0),)
    assert config.units.duration == "seconds"
    assert config.units.energy == "auto"
    assert config.actors[0].label == "1"


def test_example_config_is_valid_and_complete(tmp_path: Path) -> None:
    config = load_config(REPO / "config.example.yaml", environ={"NAYAX_LYNX_TOKEN": "t0k"})
    assert config.lynx.token == Secret("t0k")
    assert [w.name for w in config.windows] == ["24h", "today"]
    assert config.windows[1].calendar == "day"
    assert config.windows[1].timezone == "Europe/Berlin"
    actor = config.actors[0]
    assert (actor.id, actor.name, actor.currency) == (2001492652, "Acme Charging", "EUR")
    assert actor.machines[0].id == 942488501 and actor.machines[0].label == "Car park A1"
    assert actor.machines[1].number == "EV-0042" and actor.machines[1].label == "EV-0042"


def test_example_documents_every_key() -> None:
    """Every key the validator accepts appears in config.example.yaml."""
    text = (REPO / "config.example.yaml").read_text()
    for key in (
        "base_url", "token", "token_file", "timeout", "max_retries", "retry_backoff",
        "retry_backoff_max", "rate_limit_per_second", "max_concurrency", "interval",
        "stale_after", "windows", "rolling", "calendar", "timezone", "time_period",
        "duration", "energy", "actors", "currency", "machines", "number", "cumulative",
        "max_request_span",
    ):  # fmt: skip
        assert f"{key}:" in text, key


def test_one_token_variable_name_everywhere() -> None:
    """The README, the example config, the docs, the manifests and the compose file
    name the token's environment variable alike: a user following one with the
    other must not meet an unset variable at start-up. (The refresh token's
    variable, NAYAX_LYNX_REFRESH_TOKEN, is another credential.)"""
    documents = [
        REPO / "README.md",
        REPO / "config.example.yaml",
        REPO / "docker-compose.yml",
        REPO / "Dockerfile",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file()),
    ]
    names: dict[str, set[str]] = {}
    for path in documents:
        for name in re.findall(r"\bNAYAX_\w*TOKEN\b", path.read_text(encoding="utf-8")):
            if "REFRESH" not in name:
                names.setdefault(name, set()).add(str(path.relative_to(REPO)))
    assert set(names) == {"NAYAX_LYNX_TOKEN"}, names
    assert "README.md" in names["NAYAX_LYNX_TOKEN"]
    assert "config.example.yaml" in names["NAYAX_LYNX_TOKEN"]


def test_full_contract_parses() -> None:
    text = """
lynx:
  base_url: http://127.0.0.1:8080/operational/
  token: ${NAYAX_LYNX_TOKEN}
  timeout: 500ms
  max_retries: 0
  rate_limit_per_second: 0
  max_concurrency: 16
poll: {interval: 30s, stale_after: 5m}
windows:
  - {name: 24h, rolling: 24h}
  - {name: week, calendar: week, timezone: Europe/Berlin}
  - {name: period1, time_period: 1}
units: {duration: minutes, energy: kWh}
actors:
  - id: 2001492652
    name: Acme
    currency: EUR
    token: ${ACME_TOKEN:-fallback}
    machines:
      - {id: 942488501, name: Car park A1}
      - {number: "EV-0042"}
"""
    config = parse_config(text, environ={"NAYAX_LYNX_TOKEN": "global"})
    assert config.lynx.base_url == "http://127.0.0.1:8080/operational"
    assert config.lynx.timeout == 0.5
    assert config.lynx.max_retries == 0
    assert config.lynx.rate_limit_per_second == 0.0
    assert config.poll.stale_after == 300.0
    assert config.windows[2].time_period == 1
    assert config.units.duration == "minutes"
    assert config.actors[0].token == Secret("fallback")
    assert config.token_for(config.actors[0]) == Secret("fallback")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        # Prometheus forms: integer parts, largest unit first.
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1y", 365 * 86400.0),
        ("1m30s500ms", 90.5),
        ("2h0m", 7200.0),
        ("1w2d3h4m5s6ms", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5.006),
    ],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "5 minutes", "-1s", "s", "30m1h", "1h1h", "1.5h30m", "1h 30m", "1e3s"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for seconds in (0.5, 1.0, 90.0, 3600.0, 5400.0, 86400.0, 90061.5, 604800.0):
        assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(5400.0) == "1h30m"
    assert format_duration(0.5) == "500ms"


def test_every_problem_is_reported_at_once_with_key_paths() -> None:
    text = """
lynx: {token: abc, timeout: fast, max_concurrency: 0}
poll: {interval: 1m, stale_after: 10s}
windows:
  - {name: a, rolling: 1h}
  - {name: a, calendar: fortnight}
units: {duration: days}
actors:
  - id: 1
  - id: x
    machines:
      - {id: nope}
      - {id: 5, number: "N"}
"""
    errors = errors_of(text)
    expected_prefixes = [
        "lynx.timeout: must be a duration",
        "lynx.max_concurrency: must be between 1",
        "poll.stale_after: must be at least poll.interval",
        "windows[1].name: duplicate window name 'a'",
        "windows[1].calendar: must be one of day, week, month",
        "units.duration: must be one of seconds, minutes, hours",
        "actors[1].id: must be an integer",
        "actors[1].machines[0].id: must be an integer",
        "actors[1].machines[1]: set exactly one of id, number",
    ]
    for prefix in expected_prefixes:
        assert any(e.startswith(prefix) for e in errors), (prefix, errors)


def test_unknown_keys_get_a_did_you_mean_hint() -> None:
    errors = errors_of("lynx: {token: a, timout: 5s}\nactors: [{id: 1, machnes: []}]\n")
    assert any(e.startswith("lynx.timout: unknown key (did you mean 'timeout'?)") for e in errors)
    assert any(
        e.startswith("actors[0].machnes: unknown key (did you mean 'machines'?)") for e in errors
    )


def test_duplicates_are_rejected() -> None:
    errors = errors_of(
        """
lynx: {token: a}
actors:
  - {id: 1, name: A, machines: [{id: 7}, {id: 7}, {number: N}, {number: N}]}
  - {id: 1}
  - {id: 2, name: A}
  - {id: 3, machines: [{id: 8, name: X}, {id: 9, name: X}]}
"""
    )
    assert "actors[0].machines[1].id: duplicate machine id 7" in errors
    assert "actors[0].machines[3].number: duplicate machine number 'N'" in errors
    assert "actors[1].id: duplicate actor id 1" in errors
    assert "actors[2].name: duplicate actor name 'A'" in errors
    assert "actors[3].machines[1].name: duplicate machine name 'X'" in errors


def test_env_expansion_and_missing_variable() -> None:
    config = parse_config(
        "lynx: {token: '${T}', base_url: '${URL:-http://x.test}'}\nactors: [{id: 1}]\n",
        environ={"T": "secret-value"},
    )
    assert config.lynx.token == Secret("secret-value")
    assert config.lynx.base_url == "http://x.test"
    errors = errors_of("lynx: {token: '${MISSING}'}\nactors: [{id: 1}]\n")
    assert "lynx.token: environment variable MISSING is not set and has no default" in errors


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("lynx.token", "lynx: {token: '${NAYAX_LYNX_TOKEN}'}\nactors: [{id: 1}]"),
        ("lynx.token_file", "lynx: {token_file: '${NAYAX_LYNX_TOKEN}'}\nactors: [{id: 1}]"),
        ("lynx.refresh_token", "lynx: {refresh_token: '${NAYAX_LYNX_TOKEN}'}\nactors: [{id: 1}]"),
        ("actors[0].token", "actors: [{id: 1, token: '${NAYAX_LYNX_TOKEN}'}]"),
        ("lynx", "lynx: '${NAYAX_LYNX_TOKEN}'\nactors: [{id: 1}, {id: 2}]"),
        ("lynx.timeout", "lynx: {token: t, timeout: '${NAYAX_LYNX_TOKEN}'}\nactors: [{id: 1}]"),
        (
            "actors[0].machines[0]",
            "lynx: {token: t}\nactors: [{id: 1, machines: ['${NAYAX_LYNX_TOKEN}']}]",
        ),
    ],
)
def test_an_unset_variable_is_one_error_naming_the_key(key: str, text: str) -> None:
    """Its empty value does not fail the key a second time ("must not be empty",
    "no token", "must be a duration", "cannot read the token file")."""
    assert errors_of(text) == (
        f"{key}: environment variable NAYAX_LYNX_TOKEN is not set and has no default",
    )


def test_an_unset_variable_leaves_the_other_problems_reported() -> None:
    errors = errors_of(
        "lynx: {token: '${NAYAX_LYNX_TOKEN}', timeout: 5x}\n"
        "actors: [{id: 1, name: A}, {id: 1, name: B}]"
    )
    assert errors == (
        "lynx.token: environment variable NAYAX_LYNX_TOKEN is not set and has no default",
        "lynx.timeout: must be a duration like 500ms, 30s, 5m, 1h30m, 1d or 1w; got '5x'",
        "actors[1].id: duplicate actor id 1",
    )


def test_the_example_config_without_its_variable_is_one_error() -> None:
    """The newcomer's case: config.example.yaml, the token variable not exported."""
    result = config_check("--config.file", "config.example.yaml")
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        "error: lynx.token: environment variable NAYAX_LYNX_TOKEN is not set and has no default"
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (
            "'10 parsecs'",
            "must be a duration like 500ms, 30s, 5m, 1h30m, 1d or 1w; got '10 parsecs'",
        ),
        ("1000d", "must be between 10ms and 1d; got '1000d'"),
        ("-3", "must be between 10ms and 1d; got -3"),
        ("[5m]", "; got a list"),
        ("yes", "; got true"),
        # Cut to 40 characters; a line break, an escape, a bidi override and a line
        # separator show escaped, so the error stays one printable line.
        (
            r'"5m\n\e\u202e\u2028' + "x" * 60 + '"',
            r"; got '5m\n\x1b\u202e\u2028" + "x" * 34 + "'…",
        ),
    ],
)
def test_a_bad_duration_is_repeated_in_its_error(value: str, shown: str) -> None:
    errors = errors_of(f"lynx: {{token: t}}\npoll: {{interval: {value}}}\nactors: [{{id: 1}}]")
    assert len(errors) == 1 and errors[0].startswith("poll.interval: "), errors
    assert errors[0].endswith(shown), errors
    assert errors[0].isprintable()


def test_a_bad_duration_from_the_environment_is_not_repeated() -> None:
    """A token exported under the wrong key must not reach the error."""
    errors = errors_of(
        "lynx: {token: t, timeout: '${NAYAX_LYNX_TOKEN}'}\nactors: [{id: 1}]",
        environ={"NAYAX_LYNX_TOKEN": "TKN-secret-1234"},
    )
    assert errors == (
        "lynx.timeout: must be a duration like 500ms, 30s, 5m, 1h30m, 1d or 1w;"
        " got a value from an environment variable (not shown)",
    )


def test_expanded_values_cannot_inject_yaml_structure() -> None:
    config = parse_config(
        "lynx: {token: abc}\nactors: [{id: 1, name: '${N}'}]\n",
        environ={"N": "x'}, {id: 2, name: 'y"},
    )
    assert len(config.actors) == 1  # the value stayed a value
    assert config.actors[0].name == "x'}, {id: 2, name: 'y"


def test_actor_without_any_token_is_an_error() -> None:
    assert (
        "actors[0]: no token: set lynx.token, lynx.token_file, lynx.refresh_token,"
        " lynx.refresh_token_file or this actor's token or refresh_token"
        in errors_of("actors: [{id: 1}]")
    )
    # A per-actor token is enough.
    config = parse_config("actors: [{id: 1, token: own}]", environ={})
    assert config.token_for(config.actors[0]) == Secret("own")


def test_token_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = tmp_path / "config.yaml"
    path.write_text("lynx: {token_file: token}\nactors: [{id: 1}]\n")
    assert load_config(path).lynx.token == Secret("from-file")
    (tmp_path / "token").write_text("")
    with pytest.raises(ConfigError, match=r"lynx.token_file: the token file is empty"):
        load_config(path)
    path.write_text("lynx: {token_file: missing}\nactors: [{id: 1}]\n")
    with pytest.raises(ConfigError, match=r"lynx.token_file: cannot read the token file \(No such"):
        load_config(path)


def test_token_and_token_file_are_exclusive(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    errors = errors_of(f"lynx: {{token: a, token_file: {tmp_path / 't'}}}\nactors: [{{id: 1}}]")
    assert "lynx: set either token or token_file, not both" in errors


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("{name: w}", "windows[0]: set exactly one of rolling, calendar, time_period"),
        ("{name: w, rolling: 1h, time_period: 1}", "windows[0]: set exactly one of"),
        ("{rolling: 1h}", "windows[0].name: is required"),
        ("{name: w, calendar: day, timezone: Mars/Base}", "windows[0].timezone: unknown time zone"),
        ("{name: w, rolling: 1h, timezone: UTC}", "windows[0].timezone: only applies to calendar"),
        ("{name: w, time_period: 3000000000}", "windows[0].time_period: must be between"),
    ],
)
def test_window_errors(window: str, message: str) -> None:
    errors = errors_of(f"lynx: {{token: a}}\nwindows: [{window}]\nactors: [{{id: 1}}]")
    assert any(e.startswith(message) for e in errors), errors


def test_base_url_must_be_http_without_credentials() -> None:
    assert any(
        e.startswith("lynx.base_url: must be an http")
        for e in errors_of("lynx: {token: a, base_url: ftp://x}\nactors: [{id: 1}]")
    )
    errors = errors_of("lynx: {token: a, base_url: 'https://u:p@x'}\nactors: [{id: 1}]")
    assert "lynx.base_url: must not contain credentials; use lynx.token" in errors


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", "lynx: [1]", "actors: {id: 1}", "actors: []", "just a string", "a: b: c"],
)
def test_malformed_documents_are_config_errors(text: str) -> None:
    assert errors_of(text)


def test_yaml_syntax_errors_name_the_line() -> None:
    errors = errors_of("lynx:\n  token: [unclosed\nactors: []\n")
    assert errors[0].startswith("<yaml> line ")


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    token = "TKN-very-secret-123"
    config = parse_config(
        f"lynx: {{token: {token}}}\nactors: [{{id: 1, token: {token}-actor}}]", environ={}
    )
    assert token not in repr(config)
    assert token not in str(config.lynx)
    assert config.lynx.token is not None and config.lynx.token.reveal() == token
    errors = errors_of(f"lynx: {{token: {token}, tokn: {token}}}\nactors: [{{id: x}}]")
    assert all(token not in e for e in errors)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(config.lynx.token)


def test_config_check_cli_exit_codes(tmp_path: Path) -> None:
    ok = config_check("--config.file", "config.example.yaml", env={"NAYAX_LYNX_TOKEN": "TKN-abc"})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(
        "config OK: 1 actor(s), 2 machine(s), 2 window(s), 8 target(s)"
    )  # 6 evDashboard, 1 status, 1 discovery
    assert "TKN-abc" not in ok.stdout + ok.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("lynx: {token: TKN-abc, retries: 3}\nactors: [{id: one}]\n")
    failed = config_check("--config.file", str(bad))
    assert failed.returncode == 1
    assert "error: lynx.retries: unknown key" in failed.stderr
    assert "error: actors[0].id: must be an integer" in failed.stderr
    assert "TKN-abc" not in failed.stdout + failed.stderr

    missing = config_check("--config.file", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system"]
)
def test_python_tags_are_refused_not_executed(tag: str) -> None:
    # Whichever safe loader is in use (libyaml's or PyYAML's), no object is built.
    errors = errors_of(f"lynx: {{token: a}}\nactors: [{{id: 1, name: {tag}}}]")
    assert errors and errors[0].startswith("<yaml>"), errors


@pytest.mark.parametrize("escape", ["\\u202e", "\\u2028", "\\x1b"])
def test_names_with_control_or_format_characters_are_refused(escape: str) -> None:
    text = f"""
lynx: {{token: abcdefghijklmnopqrstuvwxyz}}
actors: [{{id: 1, machines: [{{id: 2, name: "bad{escape}name"}}]}}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert caught.value.errors == (
        "actors[0].machines[0].name: must not contain control or format characters",
    )
