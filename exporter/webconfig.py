"""``--web.config.file``: TLS and basic auth in the exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: ca.crt                          # optional
      min_version: TLS12                              # optional
    basic_auth_users:
      alice: $2y$10$...                               # bcrypt hash

Relative paths resolve against the web config file's directory, as in the toolkit.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml

from exporter.config import ConfigError

CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Verifying against a hash of this cost keeps a wrong user name as slow as a
# wrong password, so response times do not reveal which user names exist.
_DUMMY_HASH = bcrypt.hashpw(b"nayax-ev-exporter-dummy", bcrypt.gensalt(rounds=10))


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"


@dataclass(frozen=True)
class WebConfig:
    tls: TLSConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.tls.min_version]
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        context.verify_mode = CLIENT_AUTH_TYPES[self.tls.client_auth_type]
        if self.tls.client_ca_file is not None:
            context.load_verify_locations(self.tls.client_ca_file)
        return context

    @property
    def auth_required(self) -> bool:
        return bool(self.users)

    def check_basic_auth(self, header: str | None) -> bool:
        """True when the Authorization header carries a configured user's password."""
        if not self.users:
            return True
        if header is None or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        hashed = self.users.get(user)
        # Always run one bcrypt check (constant work whether or not the user exists).
        ok = bcrypt.checkpw(password.encode("utf-8"), hashed or _DUMMY_HASH)
        return ok and hashed is not None


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file; raises ConfigError naming key paths."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read web config: {type(exc).__name__}"]) from None
    errors: list[str] = []
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: must be a mapping"])
    for key in document:
        if key not in ("tls_server_config", "basic_auth_users", "http_server_config"):
            errors.append(f"{key}: unknown key")
    base = path.parent
    tls: TLSConfig | None = None
    raw_tls = document.get("tls_server_config")
    if raw_tls is not None:
        if not isinstance(raw_tls, dict):
            errors.append("tls_server_config: must be a mapping")
        else:
            tls = _tls(raw_tls, base, errors)
    users: dict[str, bytes] = {}
    raw_users = document.get("basic_auth_users") or {}
    if not isinstance(raw_users, dict):
        errors.append("basic_auth_users: must be a mapping of user: bcrypt hash")
    else:
        for user, hashed in raw_users.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                errors.append(f"basic_auth_users.{user}: must be a bcrypt hash")
                continue
            users[str(user)] = hashed.encode("ascii", "replace")
    if errors:
        raise ConfigError(errors)
    config = WebConfig(tls=tls, users=users)
    if tls is not None:
        try:
            config.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"tls_server_config: cannot load certificates: {exc}"]) from None
    return config


def _tls(raw: dict[object, object], base: Path, errors: list[str]) -> TLSConfig | None:
    allowed = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version")
    for key in raw:
        if key not in allowed:
            errors.append(f"tls_server_config.{key}: unknown key; allowed: {', '.join(allowed)}")
    cert, key_file = raw.get("cert_file"), raw.get("key_file")
    if not isinstance(cert, str) or not isinstance(key_file, str):
        errors.append("tls_server_config: cert_file and key_file are required")
        return None
    client_auth = str(raw.get("client_auth_type") or "NoClientCert")
    if client_auth not in CLIENT_AUTH_TYPES:
        errors.append(
            "tls_server_config.client_auth_type: must be one of " + ", ".join(CLIENT_AUTH_TYPES)
        )
    min_version = str(raw.get("min_version") or "TLS12")
    if min_version not in TLS_VERSIONS:
        errors.append("tls_server_config.min_version: must be one of " + ", ".join(TLS_VERSIONS))
    ca = raw.get("client_ca_file")
    if client_auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not ca:
        errors.append(f"tls_server_config.client_ca_file: required with {client_auth}")
    return TLSConfig(
        cert_file=base / cert,
        key_file=base / key_file,
        client_ca_file=base / ca if isinstance(ca, str) else None,
        client_auth_type=client_auth,
        min_version=min_version,
    )
