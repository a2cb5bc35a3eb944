"""Config → targets, windows → query parameters, targets → schedule. All pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.config import WindowConfig, parse_config
from exporter.kinds.windows import calendar_start, format_instant, window_params
from exporter.polling.schedule import first_due, next_due, phases
from exporter.targets import Shard, TargetKey, build_targets

CONFIG = """
lynx: {token: global}
machine_status: {enabled: false}
windows:
  - {name: 24h, rolling: 24h}
  - {name: p1, time_period: 1}
actors:
  - id: 10
    name: Ten
    currency: EUR
    machines: [{id: 100, name: Hundred}, {number: "N-1"}]
  - id: 20
    token: own
"""


def test_targets_cover_actor_and_machines_per_window() -> None:
    targets = build_targets(parse_config(CONFIG, environ={}))
    assert [str(t.key) for t in targets] == [
        "10/-/24h",
        "10/id:100/24h",
        "10/number:N-1/24h",
        "10/-/p1",
        "10/id:100/p1",
        "10/number:N-1/p1",
        "20/-/24h",
        "20/-/p1",
    ]
    first = targets[0]
    assert (first.actor, first.currency, first.machine_label, first.actor_wide) == (
        "Ten",
        "EUR",
        "",
        True,
    )
    assert first.machine_params() == {}
    assert targets[1].machine_params() == {"MachineID": "100"}
    assert targets[1].machine_label == "Hundred"
    assert targets[2].machine_params() == {"MachineNumber": "N-1"}
    assert targets[2].machine_label == "N-1"
    assert targets[6].token.reveal() == "own"
    assert targets[0].token.reveal() == "global"


def test_operator_status_comes_from_one_target_per_actor() -> None:
    targets = build_targets(parse_config(CONFIG, environ={}))
    assert [str(t.key) for t in targets if t.operator_status] == ["10/-/24h", "20/-/24h"]


def test_shard_parse() -> None:
    assert Shard.parse("2/4") == Shard(2, 4)
    assert str(Shard(1, 3)) == "1/3"
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_shards_partition_targets() -> None:
    config = parse_config(CONFIG, environ={})
    everything = {t.key for t in build_targets(config)}
    parts = [{t.key for t in build_targets(config, Shard(i, 3))} for i in range(3)]
    assert set().union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)


NOW = datetime(2026, 3, 29, 10, 30, 15, 123456, tzinfo=UTC)  # a DST-change day in Europe


def test_rolling_window() -> None:
    params = window_params(WindowConfig(name="24h", rolling=86400.0), NOW)
    assert params == {"StartDate": "2026-03-28T10:30:15Z", "EndDate": "2026-03-29T10:30:15Z"}


def test_time_period_window_passes_the_code_through() -> None:
    assert window_params(WindowConfig(name="p", time_period=7), NOW) == {"TimePeriod": "7"}


@pytest.mark.parametrize(
    ("period", "timezone", "start"),
    [
        ("day", "UTC", "2026-03-29T00:00:00Z"),
        # Berlin midnight was still CET (+01:00) before the 02:00 switch to CEST.
        ("day", "Europe/Berlin", "2026-03-28T23:00:00Z"),
        ("week", "UTC", "2026-03-23T00:00:00Z"),  # Monday
        ("month", "UTC", "2026-03-01T00:00:00Z"),
        ("month", "America/New_York", "2026-03-01T05:00:00Z"),
    ],
)
def test_calendar_windows(period: str, timezone: str, start: str) -> None:
    assert format_instant(calendar_start(NOW, period, timezone)) == start
    window = WindowConfig(name="w", calendar=period, timezone=timezone)  # type: ignore[arg-type]
    assert window_params(window, NOW) == {"StartDate": start, "EndDate": "2026-03-29T10:30:15Z"}


def test_phases_spread_evenly() -> None:
    keys = [TargetKey(1, str(i), "w") for i in range(4)]
    assert list(phases(keys, 60.0).values()) == [0.0, 15.0, 30.0, 45.0]
    assert phases([], 60.0) == {}


def test_schedule_does_not_drift_or_pile_up() -> None:
    # On time: exactly one interval later, whatever the current time inside it.
    assert next_due(100.0, 10.0, now=103.7) == 110.0
    # Far behind: the next grid point in the future, not a burst of catch-ups.
    assert next_due(100.0, 10.0, now=135.0) == 140.0
    assert first_due(epoch=0.0, phase=2.5, interval=10.0, now=31.0) == 32.5
    assert first_due(epoch=50.0, phase=2.5, interval=10.0, now=31.0) == 52.5
