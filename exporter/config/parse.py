"""Configuration: YAML text → validated, immutable :class:`Config`.

Validation collects *every* problem before failing, each prefixed with its key
path (``actors[1].machines[0].id: must be an integer``), so a fat-fingered file is
fixed in one round trip. Secrets are wrapped in :class:`Secret`, whose repr and str
never show the value, and no error message ever quotes a token.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from exporter.config.files import TOKEN_FILE_MAX, FileReadError, read_config_text, read_regular_file
from exporter.config.machines import parse_discover_flag, parse_discovery, parse_machine_status
from exporter.config.model import (
    CALENDAR_PERIODS,
    CUMULATIVE_PERIODS,
    DEFAULT_AUTH_URL,
    DEFAULT_WINDOWS,
    DURATION_UNITS,
    ENERGY_UNITS,
    REQUEST_SPANS,
    RESERVED_WINDOW_NAMES,
    ActorConfig,
    Config,
    LynxConfig,
    MachineConfig,
    PollConfig,
    RefreshToken,
    UnitsConfig,
    WindowConfig,
)
from exporter.config.validate import (
    INT32_MAX,
    SECRET_STRIP,
    ConfigError,
    FromEnvironment,
    Secret,
    Validator,
    join,
)
from exporter.config.yamlload import load_yaml

# (minimum, maximum) seconds for every duration key: no configured wait may
# overflow a timer or stall a thread (`interval: 1000000000000d` once did).
DURATION_BOUNDS: Mapping[str, tuple[float, float]] = {
    "lynx.timeout": (0.001, 300.0),
    "lynx.retry_backoff": (0.001, 600.0),
    "lynx.retry_backoff_max": (0.001, 3600.0),
    "lynx.retry_after_max": (0.001, 3600.0),
    "poll.interval": (0.01, 86400.0),
    "poll.stale_after": (0.01, 7 * 86400.0),
    "windows[].rolling": (1.0, 365 * 86400.0),
}


# --- ${VAR} expansion -----------------------------------------------------------

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# (key path, variable name) of each ${VAR} that is unset and has no default
Unset = list[tuple[str, str]]


def _expand(text: str, environ: Mapping[str, str], path: str, unset: Unset) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        unset.append((path, name))
        return ""

    expanded, substitutions = _VAR_RE.subn(replace, text)
    # What came from the environment may be a secret: no error repeats it.
    return FromEnvironment(expanded) if substitutions else expanded


def _expand_tree(node: object, environ: Mapping[str, str], path: str, unset: Unset) -> object:
    """Expand ``${VAR}`` in every string value (after YAML parsing, so values
    containing YAML syntax cannot change the document's structure)."""
    if isinstance(node, str):
        return _expand(node, environ, path or "<root>", unset)
    if isinstance(node, list):
        prefix = path or "<root>"
        return [_expand_tree(v, environ, f"{prefix}[{i}]", unset) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: _expand_tree(v, environ, join(path, str(k)), unset) for k, v in node.items()}
    return node


def _unset_errors(unset: Unset) -> list[str]:
    """Pure."""
    return [
        f"{path}: environment variable {name} is not set and has no default" for path, name in unset
    ]


def _one_error_per_cause(errors: list[str], unset: Unset) -> list[str]:
    """``errors`` without the follow-ups of an unset variable: its value is empty, so
    the key it fills fails again ("must not be empty", "must be a duration",
    "cannot read the token file"), as may the keys below it. One cause, one
    error: the unset variable, naming the key. Pure."""
    causes = set(_unset_errors(unset))
    paths = {path for path, _ in unset}
    # `lynx: ${X}` unset leaves no global token: the actors' "no token" is its echo.
    credential_unset = "lynx" in paths

    def follow_up(error: str) -> bool:
        if error in causes:
            return False
        if credential_unset and error.endswith(NO_CREDENTIAL):
            return True
        return any(error.startswith(path + mark) for path in paths for mark in (": ", ".", "["))

    return [error for error in errors if not follow_up(error)]


# --- sections ---------------------------------------------------------------------

LYNX_KEYS = (
    "base_url",
    "token",
    "token_file",
    "timeout",
    "max_retries",
    "retry_backoff",
    "retry_backoff_max",
    "rate_limit_per_second",
    "max_concurrency",
    "retry_after_max",
    "refresh_token",
    "refresh_token_file",
    "auth_url",
)


def _duration(v: Validator, node: object, path: str, bounds_key: str | None = None) -> float | None:
    low, high = DURATION_BOUNDS[bounds_key or path]
    return v.duration(node, path, minimum=low, maximum=high)


def _lynx(v: Validator, node: object, base_dir: Path) -> LynxConfig:
    raw = v.mapping(node, "lynx", LYNX_KEYS)
    defaults = LynxConfig()
    base_url = v.string(raw.get("base_url"), "lynx.base_url") or defaults.base_url
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        v.error("lynx.base_url", "must be an http:// or https:// URL")
    if parts.username or parts.password:
        v.error("lynx.base_url", "must not contain credentials; use lynx.token")
    token, token_file = _global_token(v, raw, base_dir)
    auth_url = _auth_url(v, raw)
    refresh, refresh_file = _global_refresh_token(v, raw, base_dir, auth_url)
    max_retries = v.integer(raw.get("max_retries"), "lynx.max_retries", maximum=20)
    concurrency = v.integer(
        raw.get("max_concurrency"), "lynx.max_concurrency", minimum=1, maximum=512
    )
    rate = v.number(raw.get("rate_limit_per_second"), "lynx.rate_limit_per_second")
    return LynxConfig(
        base_url=base_url.rstrip("/"),
        token=token,
        token_file=token_file,
        timeout=_duration(v, raw.get("timeout"), "lynx.timeout") or defaults.timeout,
        max_retries=defaults.max_retries if max_retries is None else max_retries,
        retry_backoff=_duration(v, raw.get("retry_backoff"), "lynx.retry_backoff")
        or defaults.retry_backoff,
        retry_backoff_max=_duration(v, raw.get("retry_backoff_max"), "lynx.retry_backoff_max")
        or defaults.retry_backoff_max,
        rate_limit_per_second=defaults.rate_limit_per_second if rate is None else rate,
        max_concurrency=concurrency or defaults.max_concurrency,
        retry_after_max=_duration(v, raw.get("retry_after_max"), "lynx.retry_after_max")
        or defaults.retry_after_max,
        refresh_token=refresh,
        refresh_token_file=refresh_file,
        auth_url=auth_url,
    )


def _auth_url(v: Validator, raw: Mapping[str, object]) -> str:
    """``lynx.auth_url``: a plain http(s) URL without a trailing slash."""
    text = v.string(raw.get("auth_url"), "lynx.auth_url")
    if text is None:
        return DEFAULT_AUTH_URL
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        v.error("lynx.auth_url", "must be an http:// or https:// URL")
    elif parts.username or parts.password or parts.query or parts.fragment:
        v.error("lynx.auth_url", "must be a plain URL: no credentials, query or fragment")
    return text.rstrip("/")


def _global_refresh_token(
    v: Validator, raw: Mapping[str, object], base_dir: Path, auth_url: str
) -> tuple[RefreshToken | None, Path | None]:
    """``lynx.refresh_token`` or ``lynx.refresh_token_file``, instead of a token."""
    given = [k for k in ("refresh_token", "refresh_token_file") if raw.get(k) is not None]
    if given and any(raw.get(k) is not None for k in ("token", "token_file")):
        v.error("lynx", "set either a token (token, token_file) or a refresh token, not both")
    if len(given) == 2:
        v.error("lynx", "set either refresh_token or refresh_token_file, not both")
        return None, None
    if given == ["refresh_token"]:
        return _refresh(v.secret(raw.get("refresh_token"), "lynx.refresh_token"), auth_url), None
    file_name = v.string(raw.get("refresh_token_file"), "lynx.refresh_token_file")
    if file_name is None:
        return None, None
    path = base_dir / file_name
    return _refresh(read_token_file(v, path, "lynx.refresh_token_file"), auth_url), path


def _refresh(secret: Secret | None, auth_url: str) -> RefreshToken | None:
    return None if secret is None else RefreshToken(secret.reveal(), auth_url)


def _global_token(
    v: Validator, raw: Mapping[str, object], base_dir: Path
) -> tuple[Secret | None, Path | None]:
    token = v.secret(raw.get("token"), "lynx.token")
    file_name = v.string(raw.get("token_file"), "lynx.token_file")
    if raw.get("token") is not None and raw.get("token_file") is not None:
        v.error("lynx", "set either token or token_file, not both")
        return None, None
    if file_name is None:
        return token, None
    token_file = base_dir / file_name
    return read_token_file(v, token_file, "lynx.token_file"), token_file


def read_token_file(v: Validator, path: Path, key: str) -> Secret | None:
    """A token file read as secret files usually are: UTF-8, a byte-order mark
    and surrounding whitespace (the trailing newline) removed; what is left must
    fit an HTTP header. Only a regular file of at most TOKEN_FILE_MAX bytes is
    read (exporter/config/files.py). Neither the path nor the content is ever quoted."""
    try:
        text = read_regular_file(path, TOKEN_FILE_MAX).decode("utf-8")
    except UnicodeDecodeError:
        v.error(key, "the token file is not UTF-8 text")
        return None
    except FileReadError as exc:
        # The path is not quoted: a token pasted where its file name belongs
        # (or `token_file: ${TOKEN}`) must not end up in logs.
        v.error(key, f"cannot read the token file ({exc.reason})")
        return None
    if not text.strip(SECRET_STRIP):
        v.error(key, "the token file is empty")
        return None
    return v.secret_text(text, key)


def _poll(v: Validator, node: object) -> PollConfig:
    raw = v.mapping(node, "poll", ("interval", "stale_after"))
    interval = _duration(v, raw.get("interval"), "poll.interval") or 60.0
    stale_after = _duration(v, raw.get("stale_after"), "poll.stale_after")
    if stale_after is not None and stale_after < interval:
        v.error("poll.stale_after", "must be at least poll.interval")
    return PollConfig(interval=interval, stale_after=stale_after or 3 * interval)


def _windows(v: Validator, node: object) -> tuple[WindowConfig, ...]:
    if node is None:
        return DEFAULT_WINDOWS
    items = v.sequence(node, "windows")
    if isinstance(node, list) and not items:
        v.error("windows", "must list at least one window (or be left out)")
    seen: set[str] = set()
    windows = (_window(v, item, f"windows[{index}]", seen) for index, item in enumerate(items))
    return tuple(w for w in windows if w is not None)


_WINDOW_KINDS = ("rolling", "calendar", "time_period", "cumulative")


def _window(v: Validator, item: object, path: str, seen: set[str]) -> WindowConfig | None:
    raw = v.mapping(item, path, (*_WINDOW_KINDS, "name", "timezone", "max_request_span"))
    name = v.string(raw.get("name"), f"{path}.name")
    if name is None and "name" not in raw:
        v.error(f"{path}.name", "is required")
    if name is not None:
        if name in seen:
            v.error(f"{path}.name", f"duplicate window name {name!r}")
        if name in RESERVED_WINDOW_NAMES:
            v.error(
                f"{path}.name",
                f"{name!r} is the window label of the {name} targets; choose another name",
            )
        seen.add(name)
    kinds = [k for k in _WINDOW_KINDS if raw.get(k) is not None]
    if len(kinds) != 1:
        v.error(path, "set exactly one of rolling, calendar, time_period, cumulative")
    rolling = _duration(v, raw.get("rolling"), f"{path}.rolling", "windows[].rolling")
    calendar = v.choice(raw.get("calendar"), f"{path}.calendar", CALENDAR_PERIODS)
    cumulative = v.choice(raw.get("cumulative"), f"{path}.cumulative", CUMULATIVE_PERIODS)
    span = v.choice(raw.get("max_request_span"), f"{path}.max_request_span", REQUEST_SPANS)
    if "max_request_span" in raw and raw.get("cumulative") is None:
        v.error(f"{path}.max_request_span", "only applies to cumulative windows")
    timezone = v.string(raw.get("timezone"), f"{path}.timezone") or "UTC"
    if "timezone" in raw and raw.get("calendar") is None and raw.get("cumulative") is None:
        v.error(f"{path}.timezone", "only applies to calendar and cumulative windows")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        v.error(f"{path}.timezone", f"unknown time zone {timezone!r}")
    time_period = v.integer(raw.get("time_period"), f"{path}.time_period", maximum=INT32_MAX)
    if name is None:
        return None
    return WindowConfig(
        name=name,
        rolling=rolling,
        calendar=calendar,  # type: ignore[arg-type]
        timezone=timezone,
        time_period=time_period,
        cumulative=cumulative,  # type: ignore[arg-type]
        max_request_span=span or "month",  # type: ignore[arg-type]
    )


def _units(v: Validator, node: object) -> UnitsConfig:
    raw = v.mapping(node, "units", ("duration", "energy"))
    duration = v.choice(raw.get("duration"), "units.duration", DURATION_UNITS)
    energy = v.choice(raw.get("energy"), "units.energy", ENERGY_UNITS)
    return UnitsConfig(
        duration=duration or "seconds",  # type: ignore[arg-type]
        energy=energy or "auto",  # type: ignore[arg-type]
    )


@dataclass
class _Seen:
    """Identities already taken, to report duplicates."""

    ids: set[object] = field(default_factory=set)
    names: set[object] = field(default_factory=set)
    numbers: set[object] = field(default_factory=set)

    @staticmethod
    def taken(collection: set[object], value: object) -> bool:
        """True if ``value`` was seen before; records it otherwise."""
        if value is None:
            return False
        if value in collection:
            return True
        collection.add(value)
        return False


NO_CREDENTIAL = (
    "no token: set lynx.token, lynx.token_file, lynx.refresh_token,"
    " lynx.refresh_token_file or this actor's token or refresh_token"
)


def _actors(
    v: Validator, node: object, have_global_token: bool, auth_url: str = DEFAULT_AUTH_URL
) -> tuple[ActorConfig, ...]:
    items = v.sequence(node, "actors")
    if not items and not v.errors_for("actors"):
        v.error("actors", "must list at least one actor")
    seen = _Seen()
    actors = (
        _actor(v, item, f"actors[{index}]", seen, have_global_token, auth_url=auth_url)
        for index, item in enumerate(items)
    )
    return tuple(a for a in actors if a is not None)


def _actor(
    v: Validator,
    item: object,
    path: str,
    seen: _Seen,
    have_global_token: bool,
    *,
    auth_url: str = DEFAULT_AUTH_URL,
) -> ActorConfig | None:
    raw = v.mapping(
        item, path, ("id", "name", "currency", "token", "machines", "discover", "refresh_token")
    )
    actor_id = v.integer(raw.get("id"), f"{path}.id", minimum=1)
    if "id" not in raw:
        v.error(f"{path}.id", "is required")
    name = v.string(raw.get("name"), f"{path}.name")
    currency = v.string(raw.get("currency"), f"{path}.currency") or ""
    token = v.secret(raw.get("token"), f"{path}.token")
    if seen.taken(seen.ids, actor_id):
        v.error(f"{path}.id", f"duplicate actor id {actor_id}")
    label = name or (str(actor_id) if actor_id is not None else None)
    if seen.taken(seen.names, label):
        v.error(f"{path}.name", f"duplicate actor name {label!r}")
    refresh = _refresh(v.secret(raw.get("refresh_token"), f"{path}.refresh_token"), auth_url)
    if raw.get("token") is not None and raw.get("refresh_token") is not None:
        v.error(path, "set either token or refresh_token, not both")
    if not have_global_token and not {"token", "refresh_token"} & raw.keys():
        v.error(path, NO_CREDENTIAL)
    machines = _machines(v, raw.get("machines"), f"{path}.machines")
    if actor_id is None:
        return None
    return ActorConfig(
        id=actor_id,
        name=name,
        currency=currency,
        token=token,
        machines=machines,
        discover=parse_discover_flag(raw.get("discover"), f"{path}.discover", v.errors),
        refresh_token=refresh,
    )


def _machines(v: Validator, node: object, path: str) -> tuple[MachineConfig, ...]:
    result: list[MachineConfig] = []
    seen = _Seen()
    for index, item in enumerate(v.sequence(node, path)):
        item_path = f"{path}[{index}]"
        raw = v.mapping(item, item_path, ("id", "number", "name"))
        machine_id = v.integer(raw.get("id"), f"{item_path}.id", minimum=1)
        number = v.string(raw.get("number"), f"{item_path}.number")
        name = v.string(raw.get("name"), f"{item_path}.name")
        if ("id" in raw) == ("number" in raw):
            v.error(item_path, "set exactly one of id, number")
        if seen.taken(seen.ids, machine_id):
            v.error(f"{item_path}.id", f"duplicate machine id {machine_id}")
        if seen.taken(seen.numbers, number):
            v.error(f"{item_path}.number", f"duplicate machine number {number!r}")
        machine = MachineConfig(id=machine_id, number=number, name=name)
        # The label identifies the series; two machines sharing it would collide.
        if seen.taken(seen.names, machine.label or None):
            v.error(f"{item_path}.name", f"duplicate machine name {machine.label!r}")
        if machine_id is not None or number is not None:
            result.append(machine)
    return tuple(result)


def parse_config(
    text: str, *, environ: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Parse and validate YAML text. Raises :class:`ConfigError` with every problem."""
    env = os.environ if environ is None else environ
    document = load_yaml(text)
    if document is None:
        document = {}
    unset: Unset = []
    tree = _expand_tree(document, env, "", unset)
    v = Validator()
    v.errors.extend(_unset_errors(unset))
    raw = v.mapping(
        tree, "", ("lynx", "poll", "windows", "units", "actors", "discovery", "machine_status")
    )
    lynx = _lynx(v, raw.get("lynx"), base_dir or Path.cwd())
    poll = _poll(v, raw.get("poll"))
    windows = _windows(v, raw.get("windows"))
    units = _units(v, raw.get("units"))
    raw_lynx = raw.get("lynx")
    has_global_token = lynx.token is not None or (
        isinstance(raw_lynx, dict)
        and any(
            k in raw_lynx for k in ("token", "token_file", "refresh_token", "refresh_token_file")
        )
    )
    actors = _actors(v, raw.get("actors"), has_global_token, lynx.auth_url)
    discovery = parse_discovery(raw.get("discovery"), v.errors)
    machine_status = parse_machine_status(raw.get("machine_status"), v.errors)
    if v.errors:
        raise ConfigError(_one_error_per_cause(v.errors, unset))
    return Config(
        actors=actors,
        lynx=lynx,
        poll=poll,
        windows=windows,
        units=units,
        discovery=discovery,
        machine_status=machine_status,
    )


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (a regular file of at most
    CONFIG_FILE_MAX bytes); relative ``token_file`` paths resolve against the
    config file's directory."""
    text = read_config_text(path)
    return parse_config(text, environ=environ, base_dir=path.parent)
