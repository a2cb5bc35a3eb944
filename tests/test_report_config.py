"""The uptime report's two input files: ``--excluded`` (excluded windows) and
``--http.config.file`` (the Prometheus common HTTP client format). Every problem
is reported at once with its key path; no error quotes a secret."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config.validate import ConfigError
from exporter.report import excluded as excluded_module
from exporter.report.charger import Charger
from exporter.report.excluded import load_excluded, parse_excluded, unmatched
from exporter.report.httpconfig import load_http_config
from tests.test_web_security import PKI, make_pki


def epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def errors(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_excluded(text)
    return caught.value.errors


# --- excluded windows ------------------------------------------------------------------

VALID = """
excluded:
  - start: 2024-03-10T02:00:00Z          # YAML reads this one as a timestamp
    end: "2024-03-10T06:30:00+01:00"     # and this one as a string: both work
    reason: grid outage, utility notice 4711
  - start: 2024-03-11T00:00:00.250Z
    end: 2024-03-11T01:00:00Z
    reason: network maintenance
    actor_id: 2001492652
  - start: "2024-03-12t00:00:00z"
    end: 2024-03-12 01:00:00Z
    reason: charger replaced
    actor_id: "2001492652"
    machine_id: 942516
"""


def test_fleet_actor_and_charger_windows_are_read() -> None:
    fleet, actor, charger = parse_excluded(VALID)
    assert (fleet.start, fleet.end) == (
        epoch("2024-03-10T02:00:00+00:00"),
        epoch("2024-03-10T05:30:00+00:00"),
    )
    assert fleet.actor_id is None and fleet.machine_id is None
    assert fleet.reason == "grid outage, utility notice 4711"
    assert actor.start == epoch("2024-03-11T00:00:00.250+00:00")
    assert (actor.actor_id, actor.machine_id) == ("2001492652", None)
    assert (charger.actor_id, charger.machine_id) == ("2001492652", "942516")
    assert charger.key == "excluded[2]"
    assert charger.applies_to(Charger("2001492652", "942516"))
    assert not charger.applies_to(Charger("2001492652", "1"))
    assert actor.applies_to(Charger("2001492652", "1"))
    assert fleet.applies_to(Charger("7", "1"))


def test_an_empty_file_or_list_has_no_windows() -> None:
    assert parse_excluded("") == ()
    assert parse_excluded("excluded: []") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- start: x", "<root>: must be a mapping"),
        ("excluded: {start: 1}", "excluded: must be a list"),
        ("excluded: [5]", "excluded[0]: must be a mapping with start, end and reason"),
        ("excluded: [{}]", "excluded[0].start: is required"),
        (
            "excluded: [{start: 2024-03-10T02:00:00, end: 2024-03-10T03:00:00Z, reason: r}]",
            "excluded[0].start: has no UTC offset; add Z (UTC) or one like +01:00",
        ),
        (
            "excluded: [{start: 2024-03-10, end: 2024-03-11T00:00:00Z, reason: r}]",
            "excluded[0].start: must be an RFC 3339 timestamp",
        ),
        (
            "excluded: [{start: '10 March', end: 2024-03-11T00:00:00Z, reason: r}]",
            "excluded[0].start: must be an RFC 3339 timestamp",
        ),
        (
            "excluded: [{start: '2024-02-30T00:00:00Z', end: 2024-03-11T00:00:00Z, reason: r}]",
            "excluded[0].start: not a valid date or time",
        ),
        (
            "excluded: [{start: 2024-03-10T02:00:00Z, end: 2024-03-10T02:00:00Z, reason: r}]",
            "excluded[0].end: must be after start",
        ),
        (
            "excluded: [{start: 2024-03-10T02:00:00Z, end: 2024-03-10T03:00:00Z, reason: ''}]",
            "excluded[0].reason: must not be empty",
        ),
        (
            "excluded: [{start: 2024-03-10T02:00:00Z, end: 2024-03-10T03:00:00Z, reason: r,"
            " machine_id: 5}]",
            "excluded[0].machine_id: needs actor_id too",
        ),
        (
            "excluded: [{start: 2024-03-10T02:00:00Z, end: 2024-03-10T03:00:00Z, reason: r,"
            " machine: 5}]",
            "excluded[0].machine: unknown key (did you mean 'machine_id'?)",
        ),
        (
            "excluded: [{start: 1900-03-10T02:00:00Z, end: 2024-03-10T03:00:00Z, reason: r}]",
            "excluded[0].start: must not be before 1970",
        ),
        ("excluded: [a: b", "<yaml> line 2"),
    ],
)
def test_problems_name_their_key_path(text: str, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors(text)), errors(text)


def test_every_problem_is_reported_at_once() -> None:
    text = yaml.safe_dump(
        {
            "excluded": [
                {"start": "2024-03-10T02:00:00Z", "end": "2024-03-10T03:00:00Z", "reason": "ok"},
                {"end": "2024-03-10T03:00:00Z", "reason": "no start"},
                {"start": "2024-03-10T02:00:00Z", "end": "yesterday", "reason": "bad end"},
            ]
        }
    )
    assert [e.split(":")[0] for e in errors(text)] == ["excluded[1].start", "excluded[2].end"]


def test_the_number_of_windows_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(excluded_module, "MAX_WINDOWS", 2)
    one = {"start": "2024-03-10T02:00:00Z", "end": "2024-03-10T03:00:00Z", "reason": "r"}
    assert len(parse_excluded(yaml.safe_dump({"excluded": [one, one]}))) == 2
    assert errors(yaml.safe_dump({"excluded": [one, one, one]})) == (
        "excluded: 3 windows; at most 2 are allowed",
    )


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_excluded(tmp_path / "missing.yml")


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("excluded: [{reason: Wartung f\u00fcr Ladepunkt}]".encode("latin-1"))
    for load_file in (load_excluded, load_http_config):
        with pytest.raises(ConfigError) as caught:
            load_file(path)
        assert caught.value.errors == (f"{path}: not UTF-8 text",)


def test_windows_may_come_through_a_pipe() -> None:
    """``--excluded <(generate-windows)``: the report reads a pipe, where the
    exporter's own config files must be regular files."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, VALID.encode())  # far below the pipe's buffer
        os.close(write_end)
        assert len(load_excluded(Path(f"/dev/fd/{read_end}"))) == 3
    finally:
        os.close(read_end)


def test_windows_for_chargers_the_report_does_not_have_are_reported() -> None:
    windows = parse_excluded(VALID)
    assert [w.key for w in unmatched(windows, [Charger("1", "2")])] == [
        "excluded[1]",
        "excluded[2]",
    ]
    assert unmatched(windows, [Charger("2001492652", "942516")]) == ()
    assert [w.key for w in unmatched(windows, [Charger("2001492652", "1")])] == ["excluded[2]"]


# --- the HTTP client config ------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def load(directory: Path, document: Any) -> Any:
    path = directory / "http.yml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return load_http_config(path)


def http_errors(directory: Path, document: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load(directory, document)
    return caught.value.errors


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_with_a_password_or_a_password_file(tmp_path: Path) -> None:
    inline = load(tmp_path, {"basic_auth": {"username": "report", "password": "pa ss wörd"}})
    assert inline.authorization.reveal() == basic("report", "pa ss wörd")
    (tmp_path / "secret").write_text("from-file\n")  # the trailing newline is not the password
    from_file = load(tmp_path, {"basic_auth": {"username": "r", "password_file": "secret"}})
    assert from_file.authorization.reveal() == basic("r", "from-file")  # relative to the file


def test_bearer_tokens_in_both_spellings(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n")
    assert load(
        tmp_path, {"authorization": {"credentials_file": "token"}}
    ).authorization.reveal() == ("Bearer tok-123")
    custom = load(tmp_path, {"authorization": {"type": "Token", "credentials": "abc"}})
    assert custom.authorization.reveal() == "Token abc"
    assert load(tmp_path, {"bearer_token": "legacy"}).authorization.reveal() == "Bearer legacy"
    assert load(tmp_path, {"bearer_token_file": "token"}).authorization.reveal() == "Bearer tok-123"


def test_tls_files_proxy_and_redirects(tmp_path: Path, pki: PKI) -> None:
    settings = load(
        tmp_path,
        {
            "tls_config": {
                "ca_file": str(pki.ca),
                "cert_file": str(pki.client.cert),
                "key_file": str(pki.client.key),
            },
            "proxy_url": "http://proxy.example:3128",
            "follow_redirects": False,
            "enable_http2": True,
        },
    )
    assert settings.ca_file == pki.ca and settings.cert_file == pki.client.cert
    assert settings.proxy_url == "http://proxy.example:3128"
    assert settings.follow_redirects is False and settings.authorization is None
    insecure = load(tmp_path, {"tls_config": {"insecure_skip_verify": True}})
    assert insecure.insecure_skip_verify is True


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.authorization is None and settings.follow_redirects is True
    assert settings.proxy_from_environment is False


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"basic_auth": {"username": "u", "password": "p"}, "bearer_token": "t"},
            "bearer_token: cannot be combined with basic_auth",
        ),
        ({"basic_auth": {"password": "p"}}, "basic_auth.username: is required"),
        ({"basic_auth": {"username": "a:b", "password": "p"}}, "basic_auth.username: must not"),
        ({"basic_auth": {"username": "u"}}, "basic_auth.password: is required"),
        (
            {"basic_auth": {"username": "u", "password": "p", "password_file": "f"}},
            "basic_auth.password_file: cannot be combined with password",
        ),
        ({"basic_auth": {"username": "u", "password_file": "nope"}}, "basic_auth.password_file"),
        ({"authorization": {"type": "Bea rer", "credentials": "x"}}, "authorization.type"),
        ({"authorization": {}}, "authorization.credentials: is required"),
        ({"oauth2": {"client_id": "x"}}, "oauth2: not supported by this tool"),
        ({"tls_config": {"server_name": "x"}}, "tls_config.server_name: not supported"),
        ({"tls_config": {"cert_file": "c.pem"}}, "tls_config.key_file: cert_file and key_file"),
        ({"tls_config": {"ca_file": "missing.pem"}}, "tls_config.ca_file: cannot load"),
        ({"tls_confg": {}}, "tls_confg: unknown key (did you mean 'tls_config'?)"),
        ({"proxy_url": "socks5://x"}, "proxy_url: must be an http"),
        (
            {"proxy_url": "http://x", "proxy_from_environment": True},
            "proxy_from_environment: cannot be combined",
        ),
        ("- a", "<root>: must be a mapping"),
    ],
)
def test_http_config_problems_name_their_key(tmp_path: Path, document: Any, expected: str) -> None:
    found = http_errors(tmp_path, document)
    assert any(e.startswith(expected) for e in found), found


def test_secrets_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    password = "hunter2-\x01-secret"  # a control character: refused, and not quoted
    found = http_errors(tmp_path, {"basic_auth": {"username": "u", "password": password}})
    assert found == (
        "basic_auth.password: holds a control character, which basic auth cannot carry",
    )
    token = "tok en-secret"  # whitespace cannot travel in a header
    found = http_errors(tmp_path, {"authorization": {"credentials": token}})
    assert "secret" not in " ".join(found)
    settings = load(tmp_path, {"basic_auth": {"username": "u", "password": "visible-secret"}})
    assert "visible-secret" not in repr(settings)
    assert base64.b64encode(b"u:visible-secret").decode() not in repr(settings)


def test_a_client_key_that_does_not_match_its_certificate(tmp_path: Path, pki: PKI) -> None:
    found = http_errors(
        tmp_path,
        {"tls_config": {"cert_file": str(pki.client.cert), "key_file": str(pki.server.key)}},
    )
    assert found[0].startswith("tls_config.cert_file: cannot load")
