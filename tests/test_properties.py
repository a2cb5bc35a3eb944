"""Property tests (hypothesis): the two parsers that take outside input.

- ``parse_payload`` gets whatever JSON the vendor sends: it may only raise
  ``BadPayloadError``, publishes only finite numbers (non-negative except sales),
  and never invents a value for a field that was absent.
- ``parse_config`` gets whatever an operator writes: it may only raise
  ``ConfigError``, every message starts with a key path, and no message ever
  quotes a token.

The ``@example`` cases are inputs that once broke these properties.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.config import DURATION_UNITS, ENERGY_UNITS, ConfigError, parse_config
from exporter.kinds.ev_dashboard import MachineFigures, OperatorStatus, Reading, parse_payload
from exporter.lynx.errors import BadPayloadError

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- parse_payload --------------------------------------------------------------------

OPERATOR_FIELDS = {
    "TotalOperatorMachines": "machines",
    "TotalCommunicatingMachines": "communicating",
    "TotalActiveMachines": "active",
    "TotalSilentMachines": "silent",
}
MACHINE_FIELDS = {
    "NumberOfChargingSessions": "charging_sessions",
    "NumberOfTransactionsForTimeInterval": "transactions",
    "SalesAmountForTimeInterval": "sales_amount",
    "TotalChargingSessionsDuration": "charging_duration_seconds",
    "TotalEnergyConsumption": "energy_joules",
}
FIELD_NAMES = [
    "OperatorDashboard",
    "MachineDashboard",
    "TimePeriod",
    "UnitOfMeasureSymbol",
    "UnitOfMeasureName",
    *OPERATOR_FIELDS,
    *MACHINE_FIELDS,
]

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([10**400, -(10**400), 2**63, 2**1023 * 3, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, math.inf, -math.inf, math.nan]),
)
numeric_strings = st.one_of(
    numbers.map(str),
    st.sampled_from(["", " ", "1e400", "-1e400", "nan", "Infinity", " 12 ", "1_000", "0x10"]),
)
units = st.sampled_from(["kWh", "Wh", "MWh", "kwh", " KWH ", "J", "", "°C", "kWh\x00"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    numeric_strings,
    units,
    st.text(max_size=20),
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10)), children, max_size=6
        ),
    ),
    max_leaves=25,
)
field_value = st.one_of(scalars, json_like)


@st.composite
def payloads(draw: st.DrawFn) -> object:
    """Mostly dashboard-shaped objects with hostile values; sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_like)

    def section(fields: Mapping[str, str], extra: list[str]) -> object:
        if draw(st.integers(0, 9)) == 0:
            return draw(json_like)  # a section that is not an object
        chosen = draw(st.lists(st.sampled_from([*fields, *extra]), unique=True))
        return {name: draw(field_value) for name in chosen}

    document: dict[str, object] = {}
    if draw(st.booleans()):
        document["OperatorDashboard"] = section(OPERATOR_FIELDS, [])
    if draw(st.integers(0, 5)) > 0:
        document["MachineDashboard"] = section(
            MACHINE_FIELDS, ["UnitOfMeasureSymbol", "UnitOfMeasureName"]
        )
    if draw(st.booleans()):
        document["TimePeriod"] = draw(field_value)
    document.update(draw(st.dictionaries(st.text(max_size=8), field_value, max_size=2)))
    return document


def _present(section: object, field: str) -> bool:
    return isinstance(section, Mapping) and section.get(field) is not None


@SETTINGS
@given(
    payload=payloads(),
    duration_unit=st.sampled_from(DURATION_UNITS),
    energy_unit=st.sampled_from(ENERGY_UNITS),
    want_operator=st.booleans(),
)
@example(
    payload={"MachineDashboard": {"NumberOfChargingSessions": 10**400}},
    duration_unit="seconds",
    energy_unit="auto",
    want_operator=False,
)
@example(
    payload={"OperatorDashboard": {"TotalOperatorMachines": -(10**400)}, "MachineDashboard": {}},
    duration_unit="seconds",
    energy_unit="auto",
    want_operator=True,
)
def test_parse_payload_only_publishes_finite_values(
    payload: object, duration_unit: Any, energy_unit: Any, want_operator: bool
) -> None:
    try:
        reading = parse_payload(
            payload,
            duration_unit=duration_unit,
            energy_unit=energy_unit,
            want_operator=want_operator,
        )
    except BadPayloadError:
        # Only an answer that is not an object as a whole is unusable.
        assert not isinstance(payload, Mapping)
        return
    assert isinstance(payload, Mapping)
    assert isinstance(reading, Reading)

    operator_section = payload.get("OperatorDashboard")
    machine_section = payload.get("MachineDashboard")
    for field, attribute in OPERATOR_FIELDS.items():
        value = getattr(reading.operator, attribute)
        if not want_operator or not _present(operator_section, field):
            assert value is None, (field, value)
        elif value is not None:
            assert math.isfinite(value) and value >= 0, (field, value)
    for field, attribute in MACHINE_FIELDS.items():
        value = getattr(reading.figures, attribute)
        if not _present(machine_section, field):
            assert value is None, (field, value)
        elif value is not None:
            assert isinstance(value, float)
            assert math.isfinite(value), (field, value)
            if attribute != "sales_amount":
                assert value >= 0, (field, value)
    if reading.time_period is not None:
        assert type(reading.time_period) is int
        assert reading.time_period == payload.get("TimePeriod")
    for problem in reading.problems:
        assert problem.reason in ("bad_payload", "unknown_unit")


@SETTINGS
@given(
    field=st.sampled_from(sorted(MACHINE_FIELDS)),
    value=st.one_of(
        st.integers(min_value=0, max_value=10**12),
        st.floats(min_value=0, max_value=1e12, allow_nan=False),
    ),
)
def test_parse_payload_keeps_good_counts_exact(field: str, value: float) -> None:
    """The other side of the property: a sane value is published, not dropped."""
    reading = parse_payload(
        {"MachineDashboard": {field: value, "UnitOfMeasureSymbol": "Wh"}},
        duration_unit="seconds",
        energy_unit="auto",
        want_operator=False,
    )
    expected = float(value) * (3600.0 if field == "TotalEnergyConsumption" else 1.0)
    assert getattr(reading.figures, MACHINE_FIELDS[field]) == expected
    assert reading.problems == ()
    assert reading.operator == OperatorStatus()
    assert isinstance(reading.figures, MachineFigures)


# --- parse_config ----------------------------------------------------------------------

SECTION_KEYS: dict[str, list[str]] = {
    "lynx": [
        "base_url",
        "token",
        "token_file",
        "timeout",
        "max_retries",
        "retry_backoff",
        "retry_backoff_max",
        "rate_limit_per_second",
        "max_concurrency",
    ],
    "poll": ["interval", "stale_after"],
    "units": ["duration", "energy"],
}
WINDOW_KEYS = ["name", "rolling", "calendar", "timezone", "time_period"]
ACTOR_KEYS = ["id", "name", "currency", "token", "machines"]
MACHINE_KEYS = ["id", "number", "name"]
TOKEN_FILE_SECRET = "TKN-from-the-token-file"
# Random keys use a small alphabet so that a key path can be told from its message.
random_keys = st.text("abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=8)
tokens = st.builds(
    lambda body: "TKN-" + body,
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=", max_size=24),
)
config_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -1, 0, 2**63, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", " ", "30s", "500ms", "5m", "1h", "0s", "-1s", "1e9h", "day", "week", "Wh", "auto"]
    ),
    st.sampled_from(
        ["https://lynx.example/op", "http://u:p@h/", "ftp://x", "${HOME}", "${NO_SUCH}"]
    ),
    st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", "token.txt", "missing.txt"]),
    st.text(max_size=12),
)
config_values = st.recursive(
    config_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(random_keys, children, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def config_documents(draw: st.DrawFn) -> tuple[object, list[str]]:
    """A config document with real and random keys and random values; tokens
    appear only where tokens belong. Returns the document and its tokens."""
    secrets: list[str] = []

    def value_for(key: str) -> object:
        if key == "token" and draw(st.integers(0, 3)) > 0:
            token = draw(tokens)
            secrets.append(token)
            return token
        return draw(config_values)

    def mapping(keys: list[str]) -> dict[str, object]:
        chosen = draw(st.lists(st.one_of(st.sampled_from(keys), random_keys), unique=True))
        return {key: value_for(key) for key in chosen}

    def maybe_broken(build: Any) -> object:
        return draw(config_values) if draw(st.integers(0, 7)) == 0 else build()

    document: dict[object, object] = {}
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            document[section] = maybe_broken(lambda keys=keys: mapping(keys))
    if draw(st.booleans()):
        document["windows"] = maybe_broken(
            lambda: [
                maybe_broken(lambda: mapping(WINDOW_KEYS)) for _ in range(draw(st.integers(0, 3)))
            ]
        )

    def actor() -> dict[str, object]:
        raw = mapping(ACTOR_KEYS)
        if "machines" in raw and draw(st.booleans()):
            raw["machines"] = [
                maybe_broken(lambda: mapping(MACHINE_KEYS)) for _ in range(draw(st.integers(0, 3)))
            ]
        return raw

    if draw(st.integers(0, 4)) > 0:
        document["actors"] = maybe_broken(
            lambda: [maybe_broken(actor) for _ in range(draw(st.integers(0, 3)))]
        )
    for key in draw(st.lists(random_keys, max_size=2)):
        document[key] = draw(config_values)
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.integers())] = draw(config_values)  # a key that is not a string
    if draw(st.integers(0, 19)) == 0:
        return draw(config_values), secrets  # not a mapping at all
    return document, secrets


SEGMENT = r"(\.[a-z0-9_-]+|\[\d+\])"
KEY_PATH = re.compile(
    # YAML syntax (" ?" when PyYAML gives no position), or a value it cannot build
    r"^(<yaml>( line \d+, column \d+| \?)?: "
    rf"|(<root>|[a-z0-9_-]+|\[\d+\]){SEGMENT}*: )\S"
)


def _check_errors(errors: tuple[str, ...], secrets: list[str]) -> None:
    assert errors, "a ConfigError must say what is wrong"
    for message in errors:
        assert KEY_PATH.match(message), f"no key path at the start of {message!r}"
        for secret in [*secrets, TOKEN_FILE_SECRET]:
            assert secret not in message, f"token quoted in {message!r}"


def _run_parse(text: str, base_dir: Path, secrets: list[str]) -> None:
    try:
        config = parse_config(text, environ={"HOME": "/home/x"}, base_dir=base_dir)
    except ConfigError as error:
        _check_errors(error.errors, secrets)
        # The exception's own text must be as clean as its list.
        for secret in [*secrets, TOKEN_FILE_SECRET]:
            assert secret not in str(error)
        return
    for secret in [*secrets, TOKEN_FILE_SECRET]:
        assert secret not in repr(config)


@SETTINGS
@given(generated=config_documents())
@example(generated=({"poll": {"interval": 10**400}}, []))
@example(generated=({"lynx": {"token": "TKN-a", "rate_limit_per_second": 10**400}}, ["TKN-a"]))
def test_parse_config_raises_only_config_errors_with_key_paths(
    generated: tuple[object, list[str]], token_dir: Path
) -> None:
    document, secrets = generated
    text = yaml.safe_dump(document, allow_unicode=True)
    _run_parse(text, token_dir, secrets)


@SETTINGS
@given(text=st.text(max_size=200))
@example(text="a: " + "9" * 5000)  # int() refuses > 4300 digits
@example(text="a: 2024-13-45")  # YAML timestamp with an impossible date
@example(text="&a [*a]")  # a list that contains itself
@example(text="lynx: &a {x: *a}")
@example(text="[" * 2000 + "]" * 2000)  # deeper than PyYAML's recursive composer can go
@example(text="::\t")  # libyaml reads the key ":", PyYAML's parser refuses the tab
def test_parse_config_survives_arbitrary_text(text: str, token_dir: Path) -> None:
    try:
        parse_config(text, environ={}, base_dir=token_dir)
    except ConfigError as error:
        for message in error.errors:
            assert _starts_with_key_path(message, text), message


def _starts_with_key_path(message: str, text: str) -> bool:
    """For free text the keys are arbitrary: a message must start with a key
    path as above or, failing that, with one of the document's own top-level keys."""
    if KEY_PATH.match(message):
        return True
    # libyaml (which the config loader uses when PyYAML has it) and PyYAML's pure
    # Python parser disagree on some odd inputs (a tab after `::`): either may be
    # the one that read the document.
    keys: set[object] = set()
    for loader in {yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)}:
        try:
            document = yaml.load(text, Loader=loader)  # noqa: S506 (safe loaders only)
        except (yaml.YAMLError, ValueError, RecursionError):
            continue
        if isinstance(document, dict):
            keys.update(document)
    return any(message.startswith(f"{key}{sep}") for key in keys for sep in (": ", ".", "["))


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config directory with a token file (module scope: hypothesis reruns the
    test body many times per fixture instance)."""
    directory = tmp_path_factory.mktemp("config")
    (directory / "token.txt").write_text(TOKEN_FILE_SECRET + "\n", encoding="utf-8")
    return directory
