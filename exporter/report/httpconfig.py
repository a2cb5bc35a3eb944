"""``--http.config.file``: how to reach Prometheus, in the Prometheus common HTTP
client format that promtool and amtool read.

    basic_auth: {username: report, password_file: /etc/prometheus/report.pass}
    # or: authorization: {type: Bearer, credentials_file: token}   (bearer_token[_file] too)
    tls_config: {ca_file: ca.crt, cert_file: client.crt, key_file: client.key,
                 insecure_skip_verify: false}
    proxy_url: http://proxy:3128      # or proxy_from_environment: true
    follow_redirects: true

Relative file names resolve against the file's directory, as in Prometheus.
Secrets are read once, kept in :class:`Secret` and never quoted in an error.
Keys of the format this tool cannot honour (oauth2, server_name, ...) are
refused by name rather than ignored.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path

from exporter.config import read_token_file
from exporter.config.validate import SECRET_STRIP, ConfigError, Secret, Validator
from exporter.config.web import EncryptedKeyError
from exporter.config.yamlload import load_yaml
from exporter.report.textfile import read_text

TOP_KEYS = (
    "basic_auth",
    "authorization",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "proxy_url",
    "proxy_from_environment",
    "follow_redirects",
    "enable_http2",
)
UNSUPPORTED_TOP = ("oauth2", "no_proxy", "proxy_connect_header")
BASIC_KEYS = ("username", "password", "password_file")
AUTHORIZATION_KEYS = ("type", "credentials", "credentials_file")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure_skip_verify")
UNSUPPORTED_TLS = ("ca", "cert", "key", "server_name", "min_version", "max_version")


@dataclass(frozen=True)
class HTTPSettings:
    authorization: Secret | None = None  # the whole Authorization header value
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False
    proxy_url: str | None = None
    proxy_from_environment: bool = False
    follow_redirects: bool = True


def load_http_config(path: Path) -> HTTPSettings:
    """Read and validate the file; raises ConfigError naming every problem."""
    return parse_http_config(read_text(path), base_dir=path.parent)


def parse_http_config(text: str, *, base_dir: Path) -> HTTPSettings:
    v = Validator()
    document = load_yaml(text)
    node = v.any_mapping(document, "")
    for key in UNSUPPORTED_TOP:
        if key in node:
            v.error(key, "not supported by this tool")
    raw = v.mapping({k: n for k, n in node.items() if k not in UNSUPPORTED_TOP}, "", TOP_KEYS)
    authorization = _authorization(v, raw, base_dir)
    tls = _tls(v, raw.get("tls_config"), base_dir)
    proxy_url = v.string(raw.get("proxy_url"), "proxy_url")
    if proxy_url is not None and not proxy_url.startswith(("http://", "https://")):
        v.error("proxy_url", "must be an http:// or https:// URL")
    from_environment = v.boolean(raw.get("proxy_from_environment"), "proxy_from_environment")
    if proxy_url is not None and from_environment:
        v.error("proxy_from_environment", "cannot be combined with proxy_url")
    follow = v.boolean(raw.get("follow_redirects"), "follow_redirects")
    v.boolean(raw.get("enable_http2"), "enable_http2")  # accepted; this client speaks HTTP/1.1
    if v.errors:
        raise ConfigError(v.errors)
    return HTTPSettings(
        authorization=authorization,
        ca_file=tls.ca_file,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        insecure_skip_verify=tls.insecure_skip_verify,
        proxy_url=proxy_url,
        proxy_from_environment=bool(from_environment),
        follow_redirects=follow is not False,
    )


def _authorization(v: Validator, raw: dict[str, object], base: Path) -> Secret | None:
    given = [
        k
        for k in ("basic_auth", "authorization", "bearer_token", "bearer_token_file")
        if raw.get(k) is not None
    ]
    if len(given) > 1:
        v.error(given[1], f"cannot be combined with {given[0]}: at most one way to authenticate")
        return None
    if not given:
        return None
    key = given[0]
    if key == "basic_auth":
        return _basic(v, raw[key], base)
    if key == "authorization":
        return _credentials(v, raw[key], base)
    if key == "bearer_token":
        token = v.secret(raw[key], key)
    else:
        name = v.string(raw[key], key)
        token = read_token_file(v, base / name, key) if name is not None else None
    return Secret(f"Bearer {token.reveal()}") if token is not None else None


def _basic(v: Validator, node: object, base: Path) -> Secret | None:
    raw = v.mapping(node, "basic_auth", BASIC_KEYS)
    username = v.string(raw.get("username"), "basic_auth.username")
    if raw.get("username") is None:
        v.error("basic_auth.username", "is required")
    elif username is not None and ":" in username:
        v.error("basic_auth.username", "must not contain ':' (RFC 7617)")
    password = _password(v, raw, base)
    if username is None or password is None or v.errors_for("basic_auth"):
        return None
    pair = f"{username}:{password.reveal()}".encode()
    return Secret(f"Basic {base64.b64encode(pair).decode('ascii')}")


def _password(v: Validator, raw: dict[str, object], base: Path) -> Secret | None:
    key = "basic_auth.password"
    if raw.get("password") is not None and raw.get("password_file") is not None:
        v.error(f"{key}_file", "cannot be combined with password")
        return None
    if raw.get("password_file") is not None:
        name = v.string(raw["password_file"], f"{key}_file")
        if name is None:
            return None
        return _password_text(v, _read_secret_file(v, base / name, f"{key}_file"), f"{key}_file")
    node = raw.get("password")
    if node is None:
        v.error(key, "is required (or password_file)")
        return None
    if isinstance(node, bool) or not isinstance(node, str | int | float):
        v.error(key, "must be a string")
        return None
    return _password_text(v, str(node), key)


def _read_secret_file(v: Validator, path: Path, key: str) -> str | None:
    """The file's text; errors name the key, never the path (it may be a pasted secret)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        v.error(key, "the file is not UTF-8 text")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid"
        v.error(key, f"cannot read the file ({reason})")
    return None


def _password_text(v: Validator, text: str | None, key: str) -> Secret | None:
    if text is None:
        return None
    value = text.strip(SECRET_STRIP)  # as Prometheus: the file's trailing newline goes
    if not value:
        v.error(key, "must not be empty")
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        v.error(key, "holds a control character, which basic auth cannot carry")
        return None
    return Secret(value)


def _credentials(v: Validator, node: object, base: Path) -> Secret | None:
    raw = v.mapping(node, "authorization", AUTHORIZATION_KEYS)
    scheme = v.string(raw.get("type"), "authorization.type") or "Bearer"
    if not scheme.isascii() or not scheme.isalnum():
        v.error("authorization.type", "must be one word such as Bearer")
    if raw.get("credentials") is not None and raw.get("credentials_file") is not None:
        v.error("authorization.credentials_file", "cannot be combined with credentials")
        return None
    if raw.get("credentials_file") is not None:
        name = v.string(raw["credentials_file"], "authorization.credentials_file")
        path = base / name if name is not None else None
        token = read_token_file(v, path, "authorization.credentials_file") if path else None
    elif raw.get("credentials") is not None:
        token = v.secret(raw["credentials"], "authorization.credentials")
    else:
        v.error("authorization.credentials", "is required (or credentials_file)")
        return None
    if token is None or v.errors_for("authorization"):
        return None
    return Secret(f"{scheme} {token.reveal()}")


@dataclass(frozen=True)
class _TLS:
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    insecure_skip_verify: bool


def _tls(v: Validator, node: object, base: Path) -> _TLS:
    mapping = v.any_mapping(node, "tls_config")
    for key in UNSUPPORTED_TLS:
        if key in mapping:
            v.error(f"tls_config.{key}", "not supported by this tool")
    raw = v.mapping(
        {k: n for k, n in mapping.items() if k not in UNSUPPORTED_TLS}, "tls_config", TLS_KEYS
    )
    files: dict[str, Path | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        name = v.string(raw.get(key), f"tls_config.{key}")
        files[key] = base / name if name is not None else None
    if (files["cert_file"] is None) != (files["key_file"] is None):
        v.error("tls_config.key_file", "cert_file and key_file go together")
    insecure = v.boolean(raw.get("insecure_skip_verify"), "tls_config.insecure_skip_verify")
    if not v.errors_for("tls_config"):
        _check_tls_files(v, files)
    return _TLS(files["ca_file"], files["cert_file"], files["key_file"], bool(insecure))


def _check_tls_files(v: Validator, files: dict[str, Path | None]) -> None:
    """Load them now: a wrong file fails before the first query, naming its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca, cert, key = files["ca_file"], files["cert_file"], files["key_file"]
    try:
        if ca is not None:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        v.error("tls_config.ca_file", f"cannot load CA certificates from {ca}: {_reason(exc)}")
    try:
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key, password=_no_passphrase)
    except EncryptedKeyError:
        v.error("tls_config.key_file", "encrypted private keys are not supported")
    except (OSError, ssl.SSLError) as exc:
        v.error("tls_config.cert_file", f"cannot load {cert} with {key}: {_reason(exc)}")


def _no_passphrase() -> str:
    # Without this callback OpenSSL would prompt for a passphrase on the terminal.
    raise EncryptedKeyError("encrypted private keys are not supported")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason) if reason else type(exc).__name__
