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
      http2: true                      # validated; this server speaks HTTP/1.1
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
  calls them insecure.
- ``curve_preferences`` is checked against the toolkit's names but not applied:
  Python 3.11 can restrict the handshake to one group only, and OpenSSL's
  default groups (X25519, P-256, P-384, P-521, ...) contain every allowed curve.
- ``rate_limit`` is refused rather than silently ignored.

Every error names its key path and never quotes a password hash or inline key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import bcrypt
import yaml

from exporter.config import ConfigError, Secret

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
TLS_KEYS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
)
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
HTTP_KEYS = ("http2", "headers")
_BCRYPT_HASH = re.compile(r"^\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}$")
BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (and bcrypt>=5 refuses) the rest


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
    # A hash of the highest configured cost, verified for unknown user names so
    # that a wrong name costs as much as a wrong password (no user enumeration).
    decoy_hash: bytes = field(default=b"", repr=False)

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
        return bool(self.users)

    def check_basic_auth(self, header: str | None) -> bool:
        """True when the Authorization header carries a configured user's password."""
        if not self.users:
            return True
        if header is None or header[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        secret = password.encode("utf-8")
        if not sep or len(secret) > BCRYPT_MAX_PASSWORD:
            return False  # says nothing about which users exist
        hashed = self.users.get(user)
        # Exactly one bcrypt verification whether or not the user exists.
        ok = bcrypt.checkpw(secret, hashed if hashed is not None else self.decoy_hash)
        return ok and hashed is not None


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
    """Read and validate a web config file; raises ConfigError naming key paths."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or type(exc).__name__}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return parse_web_config(text, base_dir=path.parent)


def parse_web_config(text: str, *, base_dir: Path) -> WebConfig:
    """Validate web config YAML text; relative paths resolve against ``base_dir``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError([f"<yaml> {where}: {problem}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(["<root>: must be a mapping"])
    errors: list[str] = []
    for key in document:
        if key == "rate_limit":
            errors.append("rate_limit: not supported by this exporter; use a reverse proxy")
        elif key not in TOP_LEVEL_KEYS:
            errors.append(f"{key}: unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    tls = _tls(document.get("tls_server_config"), base_dir, errors)
    headers = _http(document.get("http_server_config"), errors)
    users = _users(document.get("basic_auth_users"), errors)
    if errors:
        raise ConfigError(errors)
    decoy = b""
    if users:
        cost = max(int(hashed[4:6]) for hashed in users.values())
        decoy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=cost))
    config = WebConfig(tls=tls, users=MappingProxyType(users), headers=headers, decoy_hash=decoy)
    if tls is not None:
        _check_loadable(config, tls)
    return config


def _mapping(node: object, path: str, errors: list[str]) -> dict[object, object]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        errors.append(f"{path}: must be a mapping")
        return {}
    return node


def _string(node: object, path: str, errors: list[str]) -> str | None:
    if node is None:
        return None
    if not isinstance(node, str) or not node.strip():
        errors.append(f"{path}: must be a non-empty string")
        return None
    return node


def _strings(node: object, path: str, errors: list[str]) -> tuple[str, ...] | None:
    if node is None:
        return None
    if not isinstance(node, list) or not all(isinstance(v, str) for v in node):
        errors.append(f"{path}: must be a list of strings")
        return None
    return tuple(node)


def _boolean(node: object, path: str, default: bool, errors: list[str]) -> bool:
    if node is None:
        return default
    if not isinstance(node, bool):
        errors.append(f"{path}: must be true or false")
        return default
    return node


def _choice(
    node: object, path: str, choices: Mapping[str, object], default: str, errors: list[str]
) -> str:
    if node is None:
        return default
    if not isinstance(node, str) or node not in choices:
        errors.append(f"{path}: must be one of {', '.join(choices)}")
        return default
    return node


def _tls(node: object, base: Path, errors: list[str]) -> TLSConfig | None:
    prefix = "tls_server_config"
    raw = _mapping(node, prefix, errors)
    for key in raw:
        if key not in TLS_KEYS:
            errors.append(f"{prefix}.{key}: unknown key; allowed: {', '.join(TLS_KEYS)}")
    if not any(raw.get(k) not in (None, "") for k in TLS_ENABLING_KEYS):
        return None  # like the toolkit: no certificate settings means plain HTTP

    def file(key: str) -> Path | None:
        value = _string(raw.get(key), f"{prefix}.{key}", errors)
        return base / value if value is not None else None

    cert_file, key_file, ca_file = file("cert_file"), file("key_file"), file("client_ca_file")
    cert = _string(raw.get("cert"), f"{prefix}.cert", errors)
    key = _string(raw.get("key"), f"{prefix}.key", errors)
    client_ca = _string(raw.get("client_ca"), f"{prefix}.client_ca", errors)
    for inline, on_disk, given in (
        ("cert", "cert_file", cert is not None and cert_file is not None),
        ("key", "key_file", key is not None and key_file is not None),
        ("client_ca", "client_ca_file", client_ca is not None and ca_file is not None),
    ):
        if given:
            errors.append(f"{prefix}.{inline}: set either {inline} or {on_disk}, not both")
    # "required" only when neither key is there at all (a bad value is reported above).
    if raw.get("cert") is None and raw.get("cert_file") is None:
        errors.append(f"{prefix}.cert_file: is required (or cert with the PEM inline)")
    if raw.get("key") is None and raw.get("key_file") is None:
        errors.append(f"{prefix}.key_file: is required (or key with the PEM inline)")

    auth_path = f"{prefix}.client_auth_type"
    raw_auth = raw.get("client_auth_type")
    reported = len(errors)
    if raw_auth in UNSUPPORTED_CLIENT_AUTH_TYPES:
        errors.append(
            f"{auth_path}: {raw_auth} is not supported (it would accept unverified "
            "certificates); use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
        raw_auth = None
    client_auth = _choice(raw_auth or None, auth_path, CLIENT_AUTH_TYPES, "NoClientCert", errors)
    auth_valid = len(errors) == reported  # a bad type must not also cause derived errors
    has_ca = ca_file is not None or client_ca is not None
    if client_auth == "NoClientCert" and has_ca and auth_valid:
        errors.append(f"{prefix}.client_ca_file: set without a client_auth_type that uses it")
    if client_auth != "NoClientCert" and not has_ca:
        errors.append(f"{prefix}.client_ca_file: required with client_auth_type {client_auth}")

    sans = _strings(raw.get("client_allowed_sans"), f"{prefix}.client_allowed_sans", errors)
    if sans is not None and auth_valid and client_auth != "RequireAndVerifyClientCert":
        errors.append(
            f"{prefix}.client_allowed_sans: requires client_auth_type RequireAndVerifyClientCert"
        )

    min_version = _choice(
        raw.get("min_version"), f"{prefix}.min_version", TLS_VERSIONS, "TLS12", errors
    )
    max_version = _choice(
        raw.get("max_version"), f"{prefix}.max_version", TLS_VERSIONS, "TLS13", errors
    )
    if TLS_VERSIONS[min_version] > TLS_VERSIONS[max_version]:
        errors.append(f"{prefix}.min_version: must not be above max_version")

    ciphers = _strings(raw.get("cipher_suites"), f"{prefix}.cipher_suites", errors) or ()
    for index, name in enumerate(ciphers):
        if name not in CIPHER_SUITES:
            errors.append(f"{prefix}.cipher_suites[{index}]: unknown cipher suite {name!r}")
    curves = _strings(raw.get("curve_preferences"), f"{prefix}.curve_preferences", errors) or ()
    for index, name in enumerate(curves):
        if name not in CURVES:
            errors.append(
                f"{prefix}.curve_preferences[{index}]: unknown curve {name!r}; "
                f"allowed: {', '.join(CURVES)}"
            )
    prefer = _boolean(
        raw.get("prefer_server_cipher_suites"),
        f"{prefix}.prefer_server_cipher_suites",
        True,
        errors,
    )
    return TLSConfig(
        cert_file=cert_file,
        key_file=key_file,
        cert=cert,
        key=Secret(key) if key is not None else None,
        client_ca_file=ca_file,
        client_ca=client_ca,
        client_auth_type=client_auth,
        client_allowed_sans=sans,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=ciphers,
        prefer_server_cipher_suites=prefer,
        curve_preferences=curves,
    )


def _http(node: object, errors: list[str]) -> tuple[tuple[str, str], ...]:
    prefix = "http_server_config"
    raw = _mapping(node, prefix, errors)
    for key in raw:
        if key not in HTTP_KEYS:
            errors.append(f"{prefix}.{key}: unknown key; allowed: {', '.join(HTTP_KEYS)}")
    _boolean(raw.get("http2"), f"{prefix}.http2", True, errors)
    headers: list[tuple[str, str]] = []
    for name, value in _mapping(raw.get("headers"), f"{prefix}.headers", errors).items():
        path = f"{prefix}.headers.{name}"
        allowed = EXTRA_HEADERS.get(str(name), ())
        if name not in EXTRA_HEADERS:
            errors.append(f"{path}: cannot be configured; allowed: {', '.join(EXTRA_HEADERS)}")
        elif not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            errors.append(f"{path}: must be a single-line string")
        elif allowed is not None and value not in allowed:
            errors.append(f"{path}: must be one of {', '.join(allowed)}")
        elif value:  # blank means unset, as in the toolkit
            headers.append((str(name), value))
    return tuple(headers)


def _users(node: object, errors: list[str]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in _mapping(node, "basic_auth_users", errors).items():
        if not isinstance(user, str) or not user or ":" in user:
            # Basic auth splits "user:password" at the first colon.
            errors.append(f"basic_auth_users: user name {user!r} must be a string without ':'")
            continue
        path = f"basic_auth_users.{user}"
        match = _BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            # The value is never quoted: it is a password hash.
            errors.append(f"{path}: must be a bcrypt hash ($2y$10$... from htpasswd -nBC 10)")
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
        try:
            file.read_bytes()
        except OSError as exc:
            errors.append(f"{prefix}.{key}: cannot read {file}: {exc.strerror or exc}")
        except ValueError:  # e.g. a NUL byte in the path
            errors.append(f"{prefix}.{key}: not a usable file name")
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
