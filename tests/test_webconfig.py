"""Unit tests of ``exporter.config.web``: the exporter-toolkit file format, its
errors (each naming a key path, none quoting a secret), the SSL context it
builds, and the basic-auth check."""

from __future__ import annotations

import base64
import re
import ssl
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError
from exporter.config.web import (
    HTTP_KEYS,
    TLS_KEYS,
    TOP_LEVEL_KEYS,
    WebConfig,
    load_web_config,
    parse_web_config,
)
from exporter.web.basicauth import BasicAuth, Verdict
from tests.test_basicauth import count_checkpw
from tests.test_web_security import PKI, bcrypt_hash, make_pki

_CHECKERS: weakref.WeakKeyDictionary[WebConfig, BasicAuth] = weakref.WeakKeyDictionary()


def checker(config: WebConfig) -> BasicAuth:
    """The server's password checker for ``config`` (one per config: caches shared)."""
    if config not in _CHECKERS:
        _CHECKERS[config] = BasicAuth(config.users)
    return _CHECKERS[config]


def allowed(config: WebConfig, header: str | None) -> bool:
    return checker(config).check(header) is Verdict.ALLOWED


KEY_PATH = re.compile(
    r"^(<yaml> line \d+, column \d+"
    r"|<root>"
    r"|tls_server_config(\.\w+(\[\d+\])?)?"
    r"|http_server_config(\.[\w-]+)*"
    r"|basic_auth_users(\.[^:]+)?"
    r"|[\w-]+"
    r"): \S"
)


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Relative file names in generated documents resolve here (module scope:
    hypothesis runs the test body many times per fixture instance)."""
    return tmp_path_factory.mktemp("empty")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(directory: Path, document: Any) -> Path:
    path = directory / "web.yml"
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(directory: Path, document: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(directory, document))
    for message in caught.value.errors:
        assert KEY_PATH.match(message), f"no key path at the start of {message!r}"
    return caught.value.errors


def tls(pki: PKI, **extra: Any) -> dict[str, Any]:
    return {
        "tls_server_config": {
            "cert_file": str(pki.server.cert),
            "key_file": str(pki.server.key),
            **extra,
        }
    }


# --- accepted files -----------------------------------------------------------------


def test_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, ""))
    assert config.tls is None
    assert config.ssl_context() is None
    assert not config.auth_required
    assert allowed(config, None)


def test_tls_section_without_certificates_means_plain_http(tmp_path: Path) -> None:
    # As in the toolkit: only cert/key/CA/client-auth settings switch TLS on.
    config = load_web_config(write(tmp_path, {"tls_server_config": {"min_version": "TLS13"}}))
    assert config.tls is None


def test_every_documented_key_is_accepted_and_applied(tmp_path: Path, pki: PKI) -> None:
    # Relative paths resolve against the web config file's directory.
    for pair in (pki.server, pki.client):
        (tmp_path / pair.cert.name).write_bytes(pair.cert.read_bytes())
        (tmp_path / pair.key.name).write_bytes(pair.key.read_bytes())
    (tmp_path / "ca.crt").write_bytes(pki.ca.read_bytes())
    document = {
        "tls_server_config": {
            "cert_file": "server.crt",
            "key_file": "server.key",
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": "ca.crt",
            "client_allowed_sans": ["prometheus.test"],
            "min_version": "TLS12",
            "max_version": "TLS13",
            "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"],
            "prefer_server_cipher_suites": False,
            "curve_preferences": ["X25519", "CurveP256"],
        },
        "http_server_config": {
            "http2": False,
            "headers": {
                "X-Frame-Options": "sameorigin",
                "X-Content-Type-Options": "nosniff",
                "Strict-Transport-Security": "max-age=31536000",
                "X-XSS-Protection": "",  # blank: unset
            },
        },
        "basic_auth_users": {"alice": bcrypt_hash("a"), "bob": bcrypt_hash("b")},
    }
    config = load_web_config(write(tmp_path, document))
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "server.crt"
    assert config.tls.client_ca_file == tmp_path / "ca.crt"
    assert dict(config.headers) == {
        "X-Frame-Options": "sameorigin",
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000",
    }
    assert sorted(config.users) == ["alice", "bob"]
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    assert len(context.get_ca_certs()) == 1


def test_defaults_follow_the_toolkit(tmp_path: Path, pki: PKI) -> None:
    config = load_web_config(write(tmp_path, tls(pki)))
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_NONE
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_inline_pem_works_and_leaves_no_key_on_disk(tmp_path: Path, pki: PKI) -> None:
    key_text = pki.server.key.read_text()
    document = {
        "tls_server_config": {
            "cert": pki.server.cert.read_text(),
            "key": key_text,
            "client_ca": pki.ca.read_text(),
            "client_auth_type": "VerifyClientCertIfGiven",
        }
    }
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("nayax-ev-tls-*"))
    config = load_web_config(write(tmp_path, document))
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert len(context.get_ca_certs()) == 1
    assert set(scratch.glob("nayax-ev-tls-*")) == before
    assert key_text not in repr(config)
    assert "PRIVATE KEY" not in repr(config)


# --- rejected files: every error names its key path ----------------------------------------

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("top-level typo", {"tls_server_confg": {}}, "tls_server_confg: unknown key"),
    ("rate_limit", {"rate_limit": {"interval": "1s", "burst": 5}}, "rate_limit: not supported"),
    ("tls not a mapping", {"tls_server_config": "yes"}, "tls_server_config: must be a mapping"),
    (
        "tls typo",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "certfile": "c"}},
        "tls_server_config.certfile: unknown key",
    ),
    (
        "key missing",
        {"tls_server_config": {"cert_file": "a"}},
        "tls_server_config.key_file: is required",
    ),
    (
        "cert missing",
        {"tls_server_config": {"key_file": "a"}},
        "tls_server_config.cert_file: is required",
    ),
    (
        "cert and inline cert",
        {"tls_server_config": {"cert_file": "a", "cert": "b", "key_file": "c"}},
        "tls_server_config.cert: set either cert or cert_file",
    ),
    (
        "cert_file not a string",
        {"tls_server_config": {"cert_file": ["a"], "key_file": "b"}},
        "tls_server_config.cert_file: must be a non-empty string",
    ),
    (
        "bad client auth type",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Yes"}},
        "tls_server_config.client_auth_type: must be one of",
    ),
    (
        "non-verifying client auth",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "client_auth_type": "RequireAnyClientCert",
                "client_ca_file": "c",
            }
        },
        "tls_server_config.client_auth_type: RequireAnyClientCert is not supported",
    ),
    (
        "verification without a CA",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "client_auth_type": "RequireAndVerifyClientCert",
            }
        },
        "tls_server_config.client_ca_file: required with client_auth_type",
    ),
    (
        "CA without client auth",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_ca_file": "c"}},
        "tls_server_config.client_ca_file: set without a client_auth_type",
    ),
    (
        "SANs without required client certs",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "client_auth_type": "VerifyClientCertIfGiven",
                "client_ca_file": "c",
                "client_allowed_sans": ["x"],
            }
        },
        "tls_server_config.client_allowed_sans: requires client_auth_type",
    ),
    (
        "SANs not a list",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_allowed_sans": "x"}},
        "tls_server_config.client_allowed_sans: must be a list of strings",
    ),
    (
        "bad min version",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS1.2"}},
        "tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13",
    ),
    (
        "bad max version",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "max_version": 13}},
        "tls_server_config.max_version: must be one of",
    ),
    (
        "min above max",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "min_version": "TLS13",
                "max_version": "TLS12",
            }
        },
        "tls_server_config.min_version: must not be above max_version",
    ),
    (
        "unknown cipher",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "RC4-MD5"],
            }
        },
        "tls_server_config.cipher_suites[1]: unknown cipher suite",
    ),
    (
        "unknown curve",
        {"tls_server_config": {"cert_file": "a", "key_file": "b", "curve_preferences": ["P1"]}},
        "tls_server_config.curve_preferences[0]: unknown curve",
    ),
    (
        "prefer not a bool",
        {
            "tls_server_config": {
                "cert_file": "a",
                "key_file": "b",
                "prefer_server_cipher_suites": "yes",
            }
        },
        "tls_server_config.prefer_server_cipher_suites: must be true or false",
    ),
    ("http typo", {"http_server_config": {"http3": True}}, "http_server_config.http3: unknown"),
    ("http2 not bool", {"http_server_config": {"http2": "on"}}, "http_server_config.http2: must"),
    (
        "header not allowed",
        {"http_server_config": {"headers": {"Server": "x"}}},
        "http_server_config.headers.Server: cannot be configured",
    ),
    (
        "header value not allowed",
        {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
    ),
    (
        "header injection",
        {"http_server_config": {"headers": {"Content-Security-Policy": "a\r\nSet-Cookie: x"}}},
        "http_server_config.headers.Content-Security-Policy: must be a single-line string",
    ),
    ("users not a mapping", {"basic_auth_users": ["alice"]}, "basic_auth_users: must be a mapping"),
    (
        "plain-text password",
        {"basic_auth_users": {"alice": "hunter2-TKN"}},
        "basic_auth_users.alice: must be a bcrypt hash",
    ),
    (
        "truncated hash",
        {"basic_auth_users": {"alice": "$2y$10$TKNtooShort"}},
        "basic_auth_users.alice: must be a bcrypt hash",
    ),
    (
        "user name with a colon",
        {"basic_auth_users": {"al:ice": "$2y$10$" + "a" * 53}},
        "basic_auth_users: user name 'al:ice' must be a string without ':'",
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_errors_name_their_key_path(tmp_path: Path, document: Any, expected: str) -> None:
    errors = errors_of(tmp_path, document)
    assert any(e.startswith(expected) for e in errors), errors
    for message in errors:
        assert "TKN" not in message  # neither passwords nor hashes are ever quoted


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        {
            "tls_server_config": {"cert_file": "a", "min_version": "SSL3"},
            "basic_auth_users": {"alice": "plain"},
            "extra": 1,
        },
    )
    assert {e.split(":", 1)[0] for e in errors} == {
        "tls_server_config.key_file",
        "tls_server_config.min_version",
        "basic_auth_users.alice",
        "extra",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config: [\n", "<yaml> line"),
        ("- a\n- b\n", "<root>: must be a mapping"),
        ("just text", "<root>: must be a mapping"),
    ],
)
def test_malformed_documents(tmp_path: Path, text: str, expected: str) -> None:
    errors = errors_of(tmp_path, text)
    assert errors[0].startswith(expected)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_web_config(tmp_path / "missing.yml")
    assert caught.value.errors[0].startswith(f"{tmp_path / 'missing.yml'}: cannot read")


def test_certificate_problems_name_the_file_key(tmp_path: Path, pki: PKI) -> None:
    missing = errors_of(
        tmp_path, {"tls_server_config": {"cert_file": "nope.crt", "key_file": str(pki.server.key)}}
    )
    assert missing[0].startswith("tls_server_config.cert_file: cannot read")

    mismatched = errors_of(
        tmp_path,
        {"tls_server_config": {"cert_file": str(pki.server.cert), "key_file": str(pki.client.key)}},
    )
    assert mismatched[0].startswith("tls_server_config.key_file: cannot load it")

    not_a_ca = tmp_path / "ca.pem"
    not_a_ca.write_text("not a certificate\n")
    bad_ca = errors_of(
        tmp_path,
        tls(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(not_a_ca)),
    )
    assert bad_ca[0].startswith("tls_server_config.client_ca_file: cannot load CA")


def test_encrypted_key_is_refused_instead_of_prompting(tmp_path: Path, pki: PKI) -> None:
    """Without a passphrase callback OpenSSL would prompt on the terminal and a
    daemon would hang at start."""
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"TKN-passphrase"),
        )
    )
    errors = errors_of(
        tmp_path,
        {"tls_server_config": {"cert_file": str(pki.server.cert), "key_file": str(encrypted)}},
    )
    assert errors == ("tls_server_config.key_file: encrypted private keys are not supported",)


def test_inline_key_is_never_quoted(tmp_path: Path) -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTKN-inline-secret\n-----END PRIVATE KEY-----\n"
    errors = errors_of(tmp_path, {"tls_server_config": {"cert": "TKN-not-pem", "key": secret}})
    assert errors[0].startswith("tls_server_config.key: cannot load it")
    assert all("TKN" not in e for e in errors)


def test_parse_web_config_resolves_against_base_dir(tmp_path: Path) -> None:
    errors: tuple[str, ...] = ()
    with pytest.raises(ConfigError) as caught:
        parse_web_config(
            "tls_server_config: {cert_file: c.crt, key_file: k.key}", base_dir=tmp_path
        )
    errors = caught.value.errors
    assert errors[0].startswith(f"tls_server_config.cert_file: cannot read {tmp_path / 'c.crt'}")


# --- basic auth ---------------------------------------------------------------------------


def header(user: str, password: str, scheme: str = "Basic") -> str:
    return f"{scheme} " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def users_config() -> WebConfig:
    text = yaml.safe_dump(
        {"basic_auth_users": {"alice": bcrypt_hash("alice-pw", 4), "bob": bcrypt_hash("bob", 6)}}
    )
    return parse_web_config(text, base_dir=Path("."))


def test_basic_auth_accepts_only_the_right_password(users_config: WebConfig) -> None:
    assert users_config.auth_required
    assert allowed(users_config, header("alice", "alice-pw"))
    assert allowed(users_config, header("alice", "alice-pw", scheme="bAsIc"))
    assert allowed(users_config, header("bob", "bob"))
    for value in (
        None,
        "",
        "Basic",
        header("alice", "wrong"),
        header("alice", "bob"),  # bob's password is not alice's
        header("carol", "alice-pw"),
        header("alice", "alice-pw", scheme="Bearer"),
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"alice-no-colon").decode(),
        "Basic " + base64.b64encode(b"alice:\xff\xfe").decode(),  # not UTF-8
        header("alice", "alice-pw" + "x" * 80),  # beyond bcrypt's 72 bytes
    ):
        assert not allowed(users_config, value), value


def test_unknown_user_costs_one_bcrypt_verification_at_the_highest_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users_config = parse_web_config(
        yaml.safe_dump(
            {
                "basic_auth_users": {
                    "alice": bcrypt_hash("alice-pw", 4),
                    "bob": bcrypt_hash("bob", 6),
                }
            }
        ),
        base_dir=Path("."),
    )
    calls = count_checkpw(monkeypatch)

    assert not allowed(users_config, header("mallory", "alice-pw"))
    assert len(calls.hashes) == 1
    # As slow as the slowest real user (bob's hash, cost 6): no enumeration by timing,
    # and no hashing at load time (a high cost would delay the start by minutes).
    assert calls.hashes[0] == users_config.users["bob"] == checker(users_config).decoy
    assert not allowed(users_config, header("mallory", "bob"))  # bob's password

    calls.clear()
    assert not allowed(users_config, header("alice", "wrong"))
    assert not allowed(users_config, header("alice", "wrong"))  # a repeat costs no hash
    assert not allowed(users_config, header("mallory", "alice-pw"))  # nor for a stranger
    assert not allowed(users_config, header("alice", "wronger"))
    assert calls.hashes == [users_config.users["alice"]] * 2

    calls.clear()
    assert allowed(users_config, header("bob", "bob"))
    assert calls.hashes == [users_config.users["bob"]]
    # A verified user:password pair is remembered (as a keyed digest), as the toolkit
    # does: a high cost is paid once, not on every scrape.
    calls.clear()
    assert allowed(users_config, header("bob", "bob"))
    assert calls.hashes == []
    assert not allowed(users_config, header("alice", "bob"))


def test_decoy_matching_does_not_let_anyone_in(users_config: WebConfig) -> None:
    """Even a password that happens to match the decoy is refused for an unknown user."""
    assert not allowed(users_config, header("", ""))
    assert not allowed(users_config, header("nobody", ""))


def test_hashes_are_not_in_repr(users_config: WebConfig) -> None:
    text = repr(users_config)
    for hashed in users_config.users.values():
        assert hashed.decode() not in text
    assert checker(users_config).decoy.decode() not in text


# --- client certificate SANs ------------------------------------------------------------------


def sans_config(tmp_path: Path, pki: PKI, sans: list[str]) -> WebConfig:
    return load_web_config(
        write(
            tmp_path,
            tls(
                pki,
                client_auth_type="RequireAndVerifyClientCert",
                client_ca_file=str(pki.ca),
                client_allowed_sans=sans,
            ),
        )
    )


def test_client_allowed_sans_match_dns_ip_email_and_uri(tmp_path: Path, pki: PKI) -> None:
    config = sans_config(tmp_path, pki, ["prom.test", "::1", "ops@example.test", "spiffe://x/prom"])
    assert config.client_allowed({"subjectAltName": (("DNS", "prom.test"),)})
    # Python prints IPv6 SANs in full form; they compare by value.
    assert config.client_allowed({"subjectAltName": (("IP Address", "0:0:0:0:0:0:0:1\n"),)})
    assert config.client_allowed({"subjectAltName": (("email", "ops@example.test"),)})
    assert config.client_allowed({"subjectAltName": (("URI", "spiffe://x/prom"),)})
    assert not config.client_allowed({"subjectAltName": (("DNS", "other.test"),)})
    assert not config.client_allowed({"subject": ((("commonName", "prom.test"),),)})
    assert not config.client_allowed({})
    assert not config.client_allowed(None)


def test_without_san_list_every_verified_client_is_allowed(tmp_path: Path, pki: PKI) -> None:
    config = load_web_config(write(tmp_path, tls(pki)))
    assert config.client_allowed(None)
    assert WebConfig().client_allowed(None)


# --- any document: only ConfigError, always with a key path ----------------------------------

_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(["TLS12", "NoClientCert", "RequireAndVerifyClientCert", "a\x00b", "/"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
    ),
    max_leaves=8,
)


def _section(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), _values)


@settings(max_examples=150, deadline=None)
@given(
    document=st.one_of(
        _values,
        st.fixed_dictionaries(
            {},
            optional={
                "tls_server_config": st.one_of(_section(TLS_KEYS), _values),
                "http_server_config": st.one_of(_section(HTTP_KEYS), _values),
                "basic_auth_users": st.one_of(
                    st.dictionaries(st.text(max_size=6), st.one_of(_values, st.just("$2y$10$x"))),
                    _values,
                ),
                "rate_limit": _values,
            },
        ),
    ),
    extra_key=st.one_of(st.none(), st.text(max_size=8).filter(lambda k: k not in TOP_LEVEL_KEYS)),
)
@example(document={"tls_server_config": {"cert_file": "a\x00b", "key_file": "k"}}, extra_key=None)
def test_any_document_gives_a_config_or_config_errors(
    document: object, extra_key: str | None, empty_dir: Path
) -> None:
    if isinstance(document, dict) and extra_key is not None:
        document[extra_key] = 1
    try:
        parse_web_config(yaml.safe_dump(document), base_dir=empty_dir)
    except ConfigError as error:
        assert error.errors
        for message in error.errors:
            top = message.split(":", 1)[0].split(".", 1)[0]
            known = (*TOP_LEVEL_KEYS, "rate_limit", "<root>", "<yaml> line", "basic_auth_users")
            assert top.startswith(known) or (
                isinstance(document, dict) and any(message.startswith(f"{k}:") for k in document)
            ), message


# --- what exporter-toolkit accepts ------------------------------------------------------------
# One file of our own per valid shape in the toolkit's web/testdata/*.good.yml: each must
# load. CERT/KEY are replaced by the test PKI's files (copied next to the web config).

TOOLKIT_SHAPES = {
    "requireandverifyclientcert": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "RequireAndVerifyClientCert"
  client_ca_file: "ca.crt"
""",
    "headers": """
http_server_config:
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=63072000; includeSubDomains
    X-Content-Type-Options: nosniff
    X-XSS-Protection: 1
    Content-Security-Policy: "default-src 'self' *.example.test"
""",
    "noAuth": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
""",
    "noAuth_allCiphers": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
  cipher_suites:
  - TLS_AES_128_GCM_SHA256
  - TLS_AES_256_GCM_SHA384
  - TLS_CHACHA20_POLY1305_SHA256
  - TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
  - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
  - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
""",
    "noAuth_allCurves": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
  curve_preferences: [CurveP256, CurveP384, CurveP521, X25519]
""",
    "noAuth_noHTTP2": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
  cipher_suites:
    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  max_version: TLS12
http_server_config:
  http2: false
""",
    "noAuth_someCiphers": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
  cipher_suites:
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  min_version: TLS12
  max_version: TLS12
""",
    "noAuth_someCiphers_noOrder": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
  cipher_suites:
  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  prefer_server_cipher_suites: false
  min_version: TLS12
  max_version: TLS12
""",
    "noAuth_someCurves": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
  client_auth_type: "VerifyClientCertIfGiven"
  min_version: TLS13
  curve_preferences:
  - CurveP521
""",
    "noAuth_tlsInline": """
tls_server_config:
  cert: |
CERT
  key: |
KEY
  client_auth_type: "VerifyClientCertIfGiven"
""",
    "users": """
tls_server_config:
  cert_file: "server.crt"
  key_file: "server.key"
basic_auth_users:
  alice: HASH12
  bob: HASH18
  carol: HASH10
""",
    "users_noTLS": """
basic_auth_users:
  alice: HASH12
  bob: HASH18
""",
}


def _toolkit_file(directory: Path, pki: PKI, text: str) -> Path:
    for source, name in ((pki.server.cert, "server.crt"), (pki.server.key, "server.key")):
        (directory / name).write_bytes(source.read_bytes())
    (directory / "ca.crt").write_bytes(pki.ca.read_bytes())

    def indented(path: Path) -> str:
        return "\n".join("    " + line for line in path.read_text().splitlines())

    base = bcrypt_hash("pw", 4)  # a real hash; its cost field rewritten (loading only)
    for cost in (10, 12, 18):
        text = text.replace(f"HASH{cost}", f"$2y${cost}${base[7:]}")
    text = text.replace("CERT", indented(pki.server.cert)).replace("KEY", indented(pki.server.key))
    return write(directory, text)


@pytest.mark.parametrize("shape", sorted(TOOLKIT_SHAPES))
def test_every_valid_toolkit_shape_loads(tmp_path: Path, pki: PKI, shape: str) -> None:
    config = load_web_config(_toolkit_file(tmp_path, pki, TOOLKIT_SHAPES[shape]))
    if "tls_server_config" in TOOLKIT_SHAPES[shape]:
        assert config.tls is not None
        assert config.ssl_context() is not None
    if shape == "headers":
        assert ("X-XSS-Protection", "1") in config.headers
        assert ("X-Frame-Options", "deny") in config.headers
    if shape.startswith("users"):
        assert set(config.users) >= {"alice", "bob"}


def test_verify_if_given_without_a_ca_uses_the_system_trust_store(tmp_path: Path, pki: PKI) -> None:
    config = load_web_config(_toolkit_file(tmp_path, pki, TOOLKIT_SHAPES["noAuth"]))
    context = config.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_OPTIONAL
    system = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    system.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    assert context.cert_store_stats() == system.cert_store_stats()
    assert context.cert_store_stats()["x509_ca"] > 0


@pytest.mark.parametrize("mode", ["RequireAnyClientCert", "RequestClientCert"])
def test_modes_python_cannot_honour_are_refused(tmp_path: Path, pki: PKI, mode: str) -> None:
    # The toolkit accepts these (two of its 14 good files); Python's ssl module
    # verifies every client certificate it asks for, so they cannot be honoured.
    text = TOOLKIT_SHAPES["noAuth"].replace("VerifyClientCertIfGiven", mode)
    errors = errors_of(tmp_path, _toolkit_file(tmp_path, pki, text).read_text())
    assert errors == (
        f"tls_server_config.client_auth_type: {mode} is not supported (it would accept "
        "unverified certificates); use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
    )


def test_bcrypt_cost_is_bounded(tmp_path: Path) -> None:
    base = bcrypt_hash("pw", 4)
    errors = errors_of(tmp_path, {"basic_auth_users": {"alice": f"$2y$24${base[7:]}"}})
    assert len(errors) == 1
    assert errors[0].startswith("basic_auth_users.alice: bcrypt cost 24 is outside 4..18")
    assert base[7:] not in errors[0]
    assert load_web_config(write(tmp_path, {"basic_auth_users": {"a": f"$2y$18${base[7:]}"}}))


def test_web_config_errors_share_the_main_configs_dialect(tmp_path: Path) -> None:
    """One validator for both files: the "did you mean" hint and every error at once."""
    errors = errors_of(
        tmp_path,
        "tls_server_config: {cert_fil: a.crt, key_file: b.key}\n"
        "http_server_confg: {}\n"
        "tls_server_config: {}\n",  # a duplicate key, as in the main config
    )
    assert errors == ("tls_server_config: duplicate key (lines 1 and 3); YAML keys must be unique",)
    errors = errors_of(
        tmp_path, "tls_server_config: {cert_fil: a.crt, key_file: b.key}\nhttp_server_confg: {}\n"
    )
    assert any(
        e.startswith("tls_server_config.cert_fil: unknown key (did you mean 'cert_file'?)")
        for e in errors
    ), errors
    assert any(
        e.startswith("http_server_confg: unknown key (did you mean 'http_server_config'?)")
        for e in errors
    ), errors


# The toolkit's web_config_noAuth_noHTTP2Cipher.bad.yml: its noAuth_noHTTP2 shape without
# `http2: false`. Go's HTTP/2 server refuses a TLS 1.2 cipher list without the cipher
# HTTP/2 requires, so the toolkit refuses the file; so does this exporter (which speaks
# HTTP/1.1 only), so that a file accepted here works with the toolkit too.
HTTP2_OFF = "http_server_config:\n  http2: false\n"
TOOLKIT_NO_HTTP2_CIPHER = TOOLKIT_SHAPES["noAuth_noHTTP2"].removesuffix(HTTP2_OFF)


def test_a_cipher_list_without_the_http2_cipher_needs_http2_off(tmp_path: Path, pki: PKI) -> None:
    text = _toolkit_file(tmp_path, pki, TOOLKIT_NO_HTTP2_CIPHER).read_text()
    assert errors_of(tmp_path, text) == (
        "tls_server_config.cipher_suites: HTTP/2 needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 "
        "or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 in this list (exporter-toolkit refuses the "
        "file without one); add one, or set http_server_config.http2: false",
    )
    required = "    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n  max_version"
    for fixed in (
        text + HTTP2_OFF,  # the toolkit's noAuth_noHTTP2 file
        text.replace("  max_version", required),
        text.replace("max_version: TLS12", "min_version: TLS13"),  # the list configures nothing
    ):
        assert load_web_config(write(tmp_path, fixed)).tls is not None
