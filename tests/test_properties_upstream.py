"""Property test (hypothesis): arbitrary JSON through the whole path, endpoint by endpoint.

Any JSON value the three endpoints could send (any code point, lone surrogates
included; any number, 10^400 and NaN included; any nesting within the caps) goes
through its kind's parser, the store, the counters and every rendering: only a
typed failure (``BadPayloadError``) may come out of a parser, nothing past it may raise,
no target is ever marked as failing to render, and ``promtool check metrics``
accepts every exposition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import parse_config
from exporter.kinds import all_kinds
from exporter.logs import SecretScrubber, configure
from exporter.lynx.errors import BadPayloadError
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.render_guard import RenderGuard
from exporter.metrics.stats import Stats
from exporter.polling.polls import count_outcome
from exporter.polling.store import PollOutcome, SnapshotStore, discovered_machines
from exporter.targets import MachineInfo, build_targets
from exporter.web.landing import PageInfo, render_landing
from tests.harness import promtool_check_metrics

NOW = 1_780_000_000.0
CONFIG = parse_config(
    """
lynx: {token: abcdefghijklmnopqrstuvwxyz}
machine_status: {enabled: true, timestamps: Europe/Berlin}
discovery: {machine_types: []}
actors: [{id: 1, name: Acme, discover: true, machines: [{id: 7, name: Bay 7}]}]
""",
    environ={},
)
KINDS = all_kinds()
FIELDS = [
    # evDashboard
    "OperatorDashboard", "MachineDashboard", "TimePeriod", "UnitOfMeasureSymbol",
    "TotalOperatorMachines", "TotalSilentMachines", "NumberOfChargingSessions",
    "SalesAmountForTimeInterval", "TotalEnergyConsumption", "TotalChargingSessionsDuration",
    # machine status
    "LastKeepAliveDateTime", "MachineMQTTStatus", "LastTransactionDateTime",
    "LastPowerUpDateTime", "LastGPRSFailureCount", "LastReceptionLevel(RSSI)",
    # listing
    "MachineID", "MachineName", "MachineNumber", "MachineTypeID", "GeoCity",
    "GeoLatitude", "GeoLongitude", "MachineTimeZoneOffset", "ActorID",
]  # fmt: skip
# Any code point, with the troublesome ones (lone surrogates, controls, format
# characters, line and paragraph separators) drawn often, not once in a thousand.
ANY_TEXT = st.lists(
    st.characters(exclude_categories=()) | st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"]),
    max_size=40,
).map("".join)  # (st.text drops the lone surrogates of such an alphabet)
TIMESTAMPS = st.sampled_from(
    ["0001-01-01T00:00:00", "9999-12-31T23:59:59.9999999", "2026-05-28T10:00:00", "2026-05-28"]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1_0", "²", "\u0663", "1e400", " 12 ", "-0", "7", "942488501"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ANY_TEXT, TIMESTAMPS)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), ANY_TEXT), inner, max_size=8),
    ),
    max_leaves=30,
)
RECORDS = st.fixed_dictionaries(
    {"MachineID": st.one_of(st.integers(1, 40), st.sampled_from(["8", "²", " 9 "]), SCALARS)},
    optional={
        "MachineName": ANY_TEXT | SCALARS,
        "MachineNumber": ANY_TEXT | SCALARS,
        "GeoCity": ANY_TEXT | SCALARS,
        "MachineTypeID": SCALARS,
        "GeoLatitude": NUMBERS,
        "GeoLongitude": NUMBERS,
        "MachineTimeZoneOffset": NUMBERS,
        "ActorID": SCALARS,
    },
)
DASHBOARD = st.fixed_dictionaries(
    {},
    optional={
        "OperatorDashboard": st.dictionaries(st.sampled_from(FIELDS), SCALARS | JSON),
        "MachineDashboard": st.dictionaries(st.sampled_from(FIELDS), SCALARS | JSON),
        "TimePeriod": SCALARS,
    },
)
LISTING = st.lists(st.one_of(RECORDS, JSON), max_size=6).map(lambda page: [page, []])
INFO = PageInfo("1.0", "/metrics", "0/1", "c.yaml", 60.0, "https://lynx.test")


def run_through_everything(answers: dict[str, Any]) -> None:
    """Discovery first (its machines become targets), then every other target."""
    stats = Stats(started_at=NOW)
    guard = RenderGuard(configure("error", "json", SecretScrubber()), stats.count_poll_error)
    listing = build_targets(CONFIG)
    store = SnapshotStore(listing, CONFIG.poll.stale_after)
    discovered: Mapping[int, tuple[MachineInfo, ...]] = {}
    for round_ in (0, 1):
        targets = build_targets(CONFIG, None, discovered)
        store.set_targets(targets, CONFIG.poll.stale_after)
        outcomes = []
        for target in targets:
            if round_ == 1 and target.kind == "discovery":
                continue
            try:
                reading = KINDS[target.kind].parse(answers[target.kind], target, CONFIG, NOW)
                outcomes.append(PollOutcome(target.key, NOW, reading))
            except BadPayloadError as error:
                outcomes.append(PollOutcome(target.key, NOW, None, "bad_payload", str(error)))
        for transition in store.swap(outcomes).transitions:
            count_outcome(stats, transition)
        discovered = discovered_machines(store.current())
    cache = ExpositionCache(
        store, stats.registry, errors_registry=stats.errors_registry, clock=lambda: NOW + 1
    )
    cache._renderer = type(cache._renderer)(guard)
    cache.refresh()
    body, _ = cache.serve(None, None)
    render_landing(INFO, store.current(), NOW + 1, guard).decode("utf-8")
    assert guard.failing == frozenset()
    promtool_check_metrics(body.decode("utf-8"))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    dashboard=st.one_of(DASHBOARD, JSON),
    status=st.one_of(st.dictionaries(st.sampled_from(FIELDS), SCALARS | JSON), JSON),
    listing=st.one_of(LISTING, JSON),
)
def test_any_json_from_any_endpoint_renders_or_fails_typed(
    dashboard: object, status: object, listing: object
) -> None:
    run_through_everything(
        {"ev_dashboard": dashboard, "machine_status": status, "discovery": listing}
    )
