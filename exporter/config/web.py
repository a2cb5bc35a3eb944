"""``--web.config.file``: TLS and basic auth in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt            # or `cert:` with the PEM inline
      key_file: server.key             # or `key:` with the PEM inline
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: ca.crt           # or `client_ca:` inline
      client_allowed_sans: [prometheus.example]      # optional
      min_version: TLS12               # TLS10..TLS13, default TLS12
      max_version: TLS13               # default TLS13
      cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]  # Go names, TLS <= 1.2
      prefer_server_cipher_suites: true
      curve_preferences: [X25519]      # validated, see below
    http_server_config:
      http2: true                      # validated; this server speaks HTTP/1.1 (see below)
      headers: {X-Frame-Options: deny} # the toolkit's five headers and value rules
    basic_auth_users:
      alice: $2y$10$...                # bcrypt hash

Relative paths resolve against the web config file's directory, as in the
toolkit. Differences from the Go toolkit, each deliberate:

- The file is read once at start (and at ``--config.check``), not on every request.
- ``client_auth_type`` accepts NoClientCert, VerifyClientCertIfGiven and
  RequireAndVerifyClientCert. The non-verifying Go modes (RequestClientCert,
  RequireAnyClientCert) are refused: Python's TLS stack verifies every client
  certificate it asks for, so they cannot be honoured, and the toolkit itself
  calls them insecure. VerifyClientCertIfGiven without a CA verifies against
  the system trust store, as Go does; RequireAndVerifyClientCert needs a CA
  (the toolkit's own test data counts that case as a bad file).
- ``basic_auth_users`` bcrypt costs are bounded at 18 (Go allows 31): see
  :data:`BCRYPT_MAX_COST`.
- ``curve_preferences`` is checked against the toolkit's names but not applied:
  Python 3.11 can restrict the handshake to one group only, and OpenSSL's
  default groups (X25519, P-256, P-384, P-521, ...) contain every allowed curve.
- ``rate_limit`` is refused rather than silently ignored.
- ``http2`` changes nothing (this server speaks HTTP/1.1 only), but the toolkit's
  check that comes with it is made: with ``http2`` on (the default) and a minimum
  below TLS 1.3, ``cipher_suites`` must hold a cipher HTTP/2 requires, so that
  every file accepted here also works with the toolkit.
- Basic auth checks are bounded and take equal time for every user name: see
  exporter/basicauth.py.

Validation uses the same primitives as the main config (exporter/validate.py):
every error at once, each naming its key path, never quoting a password hash
or inline key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from exporter.config.files import PEM_FILE_MAX, FileReadError, read_config_text, read_regular_file
from exporter.config.validate import ConfigError, Secret, Validator
from exporter.config.yamlload import load_yaml

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)
# Go modes that never verify a certificate; Python's ssl module cannot express them.
UNSUPPORTED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)
# Go's tls.CipherSuites() (the list the toolkit accepts) → OpenSSL names.
# TLS 1.3 suites are accepted and map to nothing: neither Go nor OpenSSL's
# cipher string configures them.
CIPHER_SUITES: Mapping[str, str | None] = MappingProxyType(
    {
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_AES_128_GCM_SHA256": None,
        "TLS_AES_256_GCM_SHA384": None,
        "TLS_CHACHA20_POLY1305_SHA256": None,
    }
)
# HTTP/2 over TLS 1.2 must support one of these (RFC 9113 §9.2.2); Go's http2
# server, and so the toolkit, refuses a cipher list without either.
HTTP2_REQUIRED_CIPHERS = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
)
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
# Headers the toolkit lets an operator add, with their allowed values (None: any).
EXTRA_HEADERS: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {
        "Strict-Transport-Security": None,
        "X-Content-Type-Options": ("nosniff",),
        "X-Frame-Options": ("deny", "sameorigin"),
        "X-XSS-Protection": None,
        "Content-Security-Policy": None,
    }
)
TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
# Keys whose presence turns TLS on (the toolkit's TLSConfig.IsEnabled).
TLS_ENABLING_KEYS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
)
TLS_KEYS = (
    *TLS_ENABLING_KEYS,
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
HTTP_KEYS = ("http2", "headers")
_BCRYPT_HASH = re.compile(r"^\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}$")
# Go's bcrypt (and so the toolkit) accepts costs 4..31; 18 is the highest the
# toolkit's own examples use. Every step doubles the work (a check happens once
# per user and password: successes are cached); above 18 no scrape survives the
# first check (measured: docs/performance.md).
BCRYPT_MIN_COST = 4
BCRYPT_MAX_COST = 18


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None  # inline PEM
    key: Secret | None = None  # inline PEM
    client_ca_file: Path | None = None
    client_ca: str | None = None  # inline PEM
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class WebConfig:
    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    headers: tuple[tuple[str, str], ...] = ()

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        tls = self.tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
        with _pem_files(tls) as (cert_path, key_path):
            context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=tls.client_ca_file)
        elif tls.client_ca is not None:
            context.load_verify_locations(cadata=tls.client_ca)
        elif tls.client_auth_type != "NoClientCert":
            # No CA configured: verify against the system trust store, as Go does.
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
        openssl_ciphers = [c for c in map(CIPHER_SUITES.get, tls.cipher_suites) if c]
        if openssl_ciphers:
            context.set_ciphers(":".join(openssl_ciphers))
        if tls.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        return context

    def client_allowed(self, peer_cert: Mapping[str, object] | None) -> bool:
        """After the handshake: does the verified client certificate carry one of
        ``client_allowed_sans``? True when no SAN list is configured."""
        if self.tls is None or self.tls.client_allowed_sans is None:
            return True
        if not peer_cert:
            return False
        allowed = {_normal_san(s) for s in self.tls.client_allowed_sans}
        entries = peer_cert.get("subjectAltName") or ()
        for entry in entries if isinstance(entries, tuple) else ():
            if (
                isinstance(entry, tuple)
                and len(entry) == 2
                and entry[0] in ("DNS", "IP Address", "email", "URI")
                and _normal_san(str(entry[1])) in allowed
            ):
                return True
        return False

    @property
    def auth_required(self) -> bool:
        """Whether requests need basic auth (checked by exporter/web/basicauth.py)."""
        return bool(self.users)


class EncryptedKeyError(ValueError):
    """The private key is passphrase-protected (the toolkit has no passphrase either)."""


def _no_passphrase() -> str:
    # Without this callback OpenSSL would prompt on the terminal and hang a daemon.
    raise EncryptedKeyError("encrypted private keys are not supported")


def _normal_san(value: str) -> str:
    """IP addresses compare by value (Python prints IPv6 SANs in full form)."""
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


@contextmanager
def _pem_files(tls: TLSConfig) -> Iterator[tuple[Path, Path]]:
    """Paths of the certificate and key; inline PEM goes to a private temporary
    directory (mode 0700) that is removed as soon as OpenSSL has read it."""
    if tls.cert is None and tls.key is None and tls.cert_file and tls.key_file:
        yield tls.cert_file, tls.key_file
        return
    with tempfile.TemporaryDirectory(prefix="nayax-ev-tls-") as directory:
        cert_path = tls.cert_file or _write_private(Path(directory) / "cert.pem", tls.cert or "")
        key_text = tls.key.reveal() if tls.key is not None else ""
        key_path = tls.key_file or _write_private(Path(directory) / "key.pem", key_text)
        yield cert_path, key_path


def _write_private(path: Path, text: str) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


# --- loading --------------------------------------------------------------------


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file (a regular file of at most
    CONFIG_FILE_MAX bytes); raises ConfigError naming key paths."""
    text = read_config_text(path)
    return parse_web_config(text, base_dir=path.parent)


def parse_web_config(text: str, *, base_dir: Path) -> WebConfig:
    """Validate web config YAML text; relative paths resolve against ``base_dir``."""
    document = load_yaml(text)
    if document is None:
        document = {}
    v = Validator()
    if not isinstance(document, dict):
        raise ConfigError(["<root>: must be a mapping"])
    if "rate_limit" in document:
        v.error("rate_limit", "not supported by this exporter; use a reverse proxy")
        document = {k: n for k, n in document.items() if k != "rate_limit"}
    raw = v.mapping(document, "", TOP_LEVEL_KEYS)
    tls = _tls(v, raw.get("tls_server_config"), base_dir)
    headers = _http(v, raw.get("http_server_config"))
    if tls is not None:
        _check_http2_ciphers(v, tls, raw.get("http_server_config"))
    users = _users(v, raw.get("basic_auth_users"))
    if v.errors:
        raise ConfigError(v.errors)
    config = WebConfig(tls=tls, users=MappingProxyType(users), headers=headers)
    if tls is not None:
        _check_loadable(config, tls)
    return config


_TLS = "tls_server_config"


def _tls(v: Validator, node: object, base: Path) -> TLSConfig | None:
    raw = v.mapping(node, _TLS, TLS_KEYS)
    if not any(raw.get(k) not in (None, "") for k in TLS_ENABLING_KEYS):
        return None  # like the toolkit: no certificate settings means plain HTTP
    files = _tls_files(v, raw, base)
    client_auth, auth_valid = _client_auth(v, raw.get("client_auth_type"))
    has_ca = files.client_ca_file is not None or files.client_ca is not None
    if client_auth == "NoClientCert" and has_ca and auth_valid:
        v.error(f"{_TLS}.client_ca_file", "set without a client_auth_type that uses it")
    if client_auth == "RequireAndVerifyClientCert" and not has_ca:
        # The toolkit's own test data counts this as a bad file; VerifyClientCertIfGiven
        # without a CA verifies against the system trust store, as in Go.
        v.error(f"{_TLS}.client_ca_file", f"required with client_auth_type {client_auth}")
    sans = v.strings(raw.get("client_allowed_sans"), f"{_TLS}.client_allowed_sans")
    if sans is not None and auth_valid and client_auth != "RequireAndVerifyClientCert":
        v.error(
            f"{_TLS}.client_allowed_sans", "requires client_auth_type RequireAndVerifyClientCert"
        )
    min_version = v.one_of(raw.get("min_version"), f"{_TLS}.min_version", TLS_VERSIONS)
    max_version = v.one_of(raw.get("max_version"), f"{_TLS}.max_version", TLS_VERSIONS)
    min_version, max_version = min_version or "TLS12", max_version or "TLS13"
    if TLS_VERSIONS[min_version] > TLS_VERSIONS[max_version]:
        v.error(f"{_TLS}.min_version", "must not be above max_version")
    prefer = v.boolean(
        raw.get("prefer_server_cipher_suites"), f"{_TLS}.prefer_server_cipher_suites"
    )
    return replace(
        files,
        client_auth_type=client_auth,
        client_allowed_sans=sans,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=_named_list(v, raw, "cipher_suites", CIPHER_SUITES, "cipher suite"),
        curve_preferences=_named_list(v, raw, "curve_preferences", CURVES, "curve"),
        prefer_server_cipher_suites=True if prefer is None else prefer,
    )


def _tls_files(v: Validator, raw: Mapping[str, object], base: Path) -> TLSConfig:
    """Certificate, key and client CA: each on disk or inline, not both."""

    def text(key: str) -> str | None:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            v.error(f"{_TLS}.{key}", "must be a non-empty string")
            return None
        return value

    def file(key: str) -> Path | None:
        name = text(key)
        return base / name if name is not None else None

    cert_file, key_file, ca_file = file("cert_file"), file("key_file"), file("client_ca_file")
    cert, key, client_ca = text("cert"), text("key"), text("client_ca")
    for inline, on_disk, given in (
        ("cert", "cert_file", cert is not None and cert_file is not None),
        ("key", "key_file", key is not None and key_file is not None),
        ("client_ca", "client_ca_file", client_ca is not None and ca_file is not None),
    ):
        if given:
            v.error(f"{_TLS}.{inline}", f"set either {inline} or {on_disk}, not both")
    # "required" only when neither key is there at all (a bad value is reported above).
    if raw.get("cert") is None and raw.get("cert_file") is None:
        v.error(f"{_TLS}.cert_file", "is required (or cert with the PEM inline)")
    if raw.get("key") is None and raw.get("key_file") is None:
        v.error(f"{_TLS}.key_file", "is required (or key with the PEM inline)")
    return TLSConfig(
        cert_file=cert_file,
        key_file=key_file,
        cert=cert,
        key=Secret(key) if key is not None else None,
        client_ca_file=ca_file,
        client_ca=client_ca,
    )


def _client_auth(v: Validator, node: object) -> tuple[str, bool]:
    """The client auth type, and whether it was valid (a bad type must not also
    cause derived errors)."""
    path = f"{_TLS}.client_auth_type"
    if node in UNSUPPORTED_CLIENT_AUTH_TYPES:
        v.error(
            path,
            f"{node} is not supported (it would accept unverified certificates); "
            "use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        )
        return "NoClientCert", False
    if node in (None, ""):
        return "NoClientCert", True
    chosen = v.one_of(node, path, CLIENT_AUTH_TYPES)
    return chosen or "NoClientCert", chosen is not None


def _named_list(
    v: Validator, raw: Mapping[str, object], key: str, known: Collection[str], what: str
) -> tuple[str, ...]:
    path = f"{_TLS}.{key}"
    names = v.strings(raw.get(key), path) or ()
    for index, name in enumerate(names):
        if name not in known:
            hint = f"; allowed: {', '.join(known)}" if len(known) < 10 else ""
            v.error(f"{path}[{index}]", f"unknown {what} {name!r}{hint}")
    return names


def _http(v: Validator, node: object) -> tuple[tuple[str, str], ...]:
    prefix = "http_server_config"
    raw = v.mapping(node, prefix, HTTP_KEYS)
    v.boolean(raw.get("http2"), f"{prefix}.http2")
    headers: list[tuple[str, str]] = []
    for name, value in v.any_mapping(raw.get("headers"), f"{prefix}.headers").items():
        path = f"{prefix}.headers.{name}"
        allowed = EXTRA_HEADERS.get(str(name), ())
        # Go reads `X-XSS-Protection: 1` into a string; so do we.
        text = (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )
        if name not in EXTRA_HEADERS:
            v.error(path, f"cannot be configured; allowed: {', '.join(EXTRA_HEADERS)}")
        elif not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            v.error(path, "must be a single-line string")
        elif allowed is not None and text not in allowed:
            v.error(path, f"must be one of {', '.join(allowed)}")
        elif text:  # blank means unset, as in the toolkit
            headers.append((str(name), text))
    return tuple(headers)


def _check_http2_ciphers(v: Validator, tls: TLSConfig, http_node: object) -> None:
    """The toolkit's check (Go's http2 server set-up): a cipher list for TLS 1.2
    must hold a cipher HTTP/2 requires, unless ``http2`` is off or the minimum
    is TLS 1.3. This server speaks only HTTP/1.1; the check keeps every file it
    accepts valid for exporter-toolkit too."""
    http2 = http_node.get("http2") if isinstance(http_node, dict) else None
    if http2 is not None and http2 is not True:
        return  # false, or not a boolean (reported by _http)
    if not tls.cipher_suites or TLS_VERSIONS[tls.min_version] >= ssl.TLSVersion.TLSv1_3:
        return
    if not any(name in HTTP2_REQUIRED_CIPHERS for name in tls.cipher_suites):
        v.error(
            f"{_TLS}.cipher_suites",
            f"HTTP/2 needs {' or '.join(HTTP2_REQUIRED_CIPHERS)} in this list (exporter-toolkit "
            "refuses the file without one); add one, or set http_server_config.http2: false",
        )


def _users(v: Validator, node: object) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in v.any_mapping(node, "basic_auth_users").items():
        if not isinstance(user, str) or not user or ":" in user:
            # Basic auth splits "user:password" at the first colon.
            v.error("basic_auth_users", f"user name {user!r} must be a string without ':'")
            continue
        path = f"basic_auth_users.{user}"
        match = _BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if match is None:
            # The value is never quoted: it is a password hash.
            v.error(path, "must be a bcrypt hash ($2y$10$... from htpasswd -nBC 10)")
            continue
        cost = int(match.group(1))
        if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
            v.error(
                path,
                f"bcrypt cost {cost} is outside {BCRYPT_MIN_COST}..{BCRYPT_MAX_COST}: each step "
                "doubles the time of a check (cost 18 takes ~20 s on 2 cores, 24 over 20 min); "
                "hash again with htpasswd -nBC 10",
            )
            continue
        users[user] = match.group(0).encode("ascii")
    return users


def _check_loadable(config: WebConfig, tls: TLSConfig) -> None:
    """Open every file and build the context now, so a bad file fails at start."""
    prefix = "tls_server_config"
    errors: list[str] = []
    for key, file in (
        ("cert_file", tls.cert_file),
        ("key_file", tls.key_file),
        ("client_ca_file", tls.client_ca_file),
    ):
        if file is None:
            continue
        try:  # a FIFO here would block OpenSSL's read below for good
            read_regular_file(file, PEM_FILE_MAX)
        except FileReadError as exc:
            errors.append(f"{prefix}.{key}: cannot read {file}: {exc.reason}")
    if errors:
        raise ConfigError(errors)
    key_key = "key" if tls.key is not None else "key_file"
    try:
        with _pem_files(tls) as (cert_path, key_path):
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            probe.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    except EncryptedKeyError:
        message = "encrypted private keys are not supported"
        raise ConfigError([f"{prefix}.{key_key}: {message}"]) from None
    except (OSError, ssl.SSLError) as exc:
        message = f"cannot load it with the certificate: {_ssl_reason(exc)}"
        raise ConfigError([f"{prefix}.{key_key}: {message}"]) from None
    if tls.client_ca_file is not None or tls.client_ca is not None:
        ca_key = "client_ca_file" if tls.client_ca_file is not None else "client_ca"
        try:
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            if tls.client_ca_file is not None:
                probe.load_verify_locations(cafile=tls.client_ca_file)
            else:
                probe.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            message = f"cannot load CA certificates: {_ssl_reason(exc)}"
            raise ConfigError([f"{prefix}.{ca_key}: {message}"]) from None
    try:
        config.ssl_context()
    except (OSError, ssl.SSLError, ValueError) as exc:
        key = "cipher_suites" if tls.cipher_suites else "min_version"
        raise ConfigError([f"{prefix}.{key}: rejected by OpenSSL: {_ssl_reason(exc)}"]) from None


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__
