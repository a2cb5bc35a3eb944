"""Cumulative windows (docs/counters.md): the config, the sub-periods, the
high-water marks, the requests and values against the simulator over real
sockets (its clock set by the test), and the counters' exposition in both formats."""

from __future__ import annotations

import gzip
import math
import random
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from exporter.config import Config, ConfigError, WindowConfig, parse_config
from exporter.kinds import KINDS
from exporter.kinds.base import CounterSample
from exporter.kinds.cumulative import CumulativeReading, periods, settle
from exporter.kinds.ev_dashboard import EvDashboard, MachineFigures, OperatorStatus
from exporter.lynx.client import LynxClient
from exporter.lynx.errors import BadPayloadError, LynxError
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.metrics.exposition import DataRenderer, ExpositionCache
from exporter.metrics.families import (
    COUNTER_FAMILIES,
    COUNTER_INDEX,
    DATA_FAMILIES,
    FAMILY_INDEX,
    state_samples,
)
from exporter.polling.store import PollOutcome, Snapshot, SnapshotStore
from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from exporter.simulator.history import Totals
from exporter.targets import EV_DASHBOARD, Target, build_targets
from tests.harness import promtool_check_metrics

BERLIN = ZoneInfo("Europe/Berlin")
J_PER_KWH = 3_600_000.0


def at(year: int, month: int, day: int, *time_of_day: int) -> float:
    """Unix seconds of a wall time in Berlin: ``at(2025, 5, 20, 10, 0, 0)``."""
    hour, minute, second = (*time_of_day, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN).timestamp()


def window(**fields: object) -> WindowConfig:
    return WindowConfig(name="w", timezone="Europe/Berlin", **fields)  # type: ignore[arg-type]


def berlin(moment: datetime) -> tuple[int, ...]:
    local = moment.astimezone(BERLIN)
    return local.year, local.month, local.day, local.hour


# --- config --------------------------------------------------------------------------


def windows_of(text: str) -> tuple[WindowConfig, ...]:
    return parse_config(f"lynx: {{token: a}}\nactors: [{{id: 1}}]\nwindows: {text}").windows


def test_a_cumulative_window_is_parsed_with_its_anchor_zone_and_span() -> None:
    ytd, mtd = windows_of(
        "[{name: ytd, cumulative: year, timezone: Europe/Berlin},"
        " {name: mtd, cumulative: month, max_request_span: day}]"
    )
    assert ytd == WindowConfig(name="ytd", cumulative="year", timezone="Europe/Berlin")
    assert ytd.max_request_span == "month"  # the default: a month per request
    assert (mtd.cumulative, mtd.timezone, mtd.max_request_span) == ("month", "UTC", "day")


@pytest.mark.parametrize(
    ("window_text", "message"),
    [
        ("{name: w, cumulative: week}", "windows[0].cumulative: must be one of"),
        ("{name: w, cumulative: year, rolling: 1h}", "windows[0]: set exactly one of"),
        ("{name: w, rolling: 1h, max_request_span: day}", "windows[0].max_request_span: only"),
        ("{name: w, cumulative: year, max_request_span: week}", "windows[0].max_request_span"),
    ],
)
def test_cumulative_window_errors(window_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        windows_of(f"[{window_text}]")
    assert any(e.startswith(message) for e in raised.value.errors), raised.value.errors


# --- the sub-periods ---------------------------------------------------------------------


def test_year_to_date_asks_for_each_closed_month_and_the_current_one() -> None:
    now = datetime.fromtimestamp(at(2025, 5, 20, 10), UTC)
    cut = periods(window(cumulative="year"), now)
    assert cut.anchor == datetime(2025, 1, 1, tzinfo=BERLIN)
    assert [berlin(start) for start, _ in cut.closed] == [(2025, m, 1, 0) for m in (1, 2, 3, 4)]
    assert [berlin(end) for _, end in cut.closed] == [(2025, m, 1, 0) for m in (2, 3, 4, 5)]
    assert cut.current == datetime(2025, 5, 1, tzinfo=BERLIN)
    # The parts tile the range: each starts where the one before ended.
    starts = [cut.anchor, *(end for _, end in cut.closed)]
    assert [start for start, _ in cut.closed] + [cut.current] == starts


def test_a_span_as_long_as_the_period_asks_once_from_the_anchor() -> None:
    now = datetime.fromtimestamp(at(2025, 5, 20, 10), UTC)
    cut = periods(window(cumulative="year", max_request_span="year"), now)
    assert (cut.closed, cut.current) == ((), datetime(2025, 1, 1, tzinfo=BERLIN))
    cut = periods(window(cumulative="month", max_request_span="month"), now)
    assert (cut.closed, cut.current) == ((), datetime(2025, 5, 1, tzinfo=BERLIN))


def test_days_across_a_dst_change_start_at_local_midnight() -> None:
    """Berlin moves to summer time on 30 March 2025: that day lasts 23 hours."""
    now = datetime.fromtimestamp(at(2025, 3, 31, 12), UTC)
    cut = periods(window(cumulative="month", max_request_span="day"), now)
    assert len(cut.closed) == 30
    lengths = {(end.timestamp() - start.timestamp()) / 3600 for start, end in cut.closed}
    assert lengths == {24.0, 23.0}
    assert all(berlin(start)[3] == 0 for start, _ in cut.closed)


def test_the_anchor_is_midnight_in_the_window_zone_not_utc() -> None:
    # 23:30 UTC on 31 December is already 1 January in Berlin.
    now = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)
    assert periods(window(cumulative="year"), now).anchor == datetime(2025, 1, 1, tzinfo=BERLIN)
    utc = WindowConfig(name="w", cumulative="year")
    assert periods(utc, now).anchor == datetime(2024, 1, 1, tzinfo=UTC)
    assert len(periods(utc, now).closed) == 11  # January to November; December is current


# --- the high-water marks ---------------------------------------------------------------


def figures(sales: float | None, energy: float | None = 10.0) -> MachineFigures:
    return MachineFigures(
        charging_sessions=1.0,
        transactions=1.0,
        sales_amount=sales,
        charging_duration_seconds=1.0,
        energy_joules=energy,
    )


def test_a_decrease_keeps_the_mark_and_is_counted_once() -> None:
    marks, last = MachineFigures(), MachineFigures()
    published, marks, seen = settle(marks, last, figures(100.0))
    assert (published.sales_amount, seen) == (100.0, 0)
    last = figures(100.0)
    published, marks, seen = settle(marks, last, figures(90.0))  # a refund of 10
    assert (published.sales_amount, seen) == (100.0, 1)
    last = figures(90.0)
    published, marks, seen = settle(marks, last, figures(95.0))  # still below the mark
    assert (published.sales_amount, seen) == (100.0, 0)
    last = figures(95.0)
    published, marks, seen = settle(marks, last, figures(120.0))  # past it: the real value
    assert (published.sales_amount, seen) == (120.0, 0)


def test_an_unknown_figure_is_not_published_but_keeps_its_mark() -> None:
    _, marks, _ = settle(MachineFigures(), MachineFigures(), figures(100.0, energy=50.0))
    published, marks, seen = settle(marks, figures(100.0, 50.0), figures(100.0, energy=None))
    assert (published.energy_joules, marks.energy_joules, seen) == (None, 50.0, 0)
    published, _, _ = settle(marks, figures(100.0, 50.0), figures(100.0, energy=40.0))
    assert (published.energy_joules, published.sales_amount) == (50.0, 100.0)


def test_sums_that_differ_in_their_last_bits_are_no_correction() -> None:
    _, marks, _ = settle(MachineFigures(), MachineFigures(), figures(0.1 + 0.2))
    _, _, seen = settle(marks, figures(0.1 + 0.2), figures(0.3))
    assert seen == 0


# --- against the simulator ---------------------------------------------------------------

ACTOR = 2001492652
NOW = at(2025, 5, 20, 10, 0, 0)  # a Tuesday in May: four closed months of the year


@pytest.fixture
def history_fleet() -> Fleet:
    return Fleet(FleetSpec(seed=11, actors=1, machines_per_actor=3, silent_probability=0.0))


@pytest.fixture
def vendor(history_fleet: Fleet) -> Iterator[SimulatorServer]:
    server = SimulatorServer(history_fleet, tokens="sim-token")
    server.clock.set(NOW, rate=0.0)  # frozen: every poll says when it is
    server.start()
    try:
        yield server
    finally:
        server.stop()


def counters_config(vendor: SimulatorServer, history_fleet: Fleet) -> Config:
    machines = history_fleet.machines(ACTOR)
    return parse_config(
        f"""
lynx: {{base_url: "{vendor.url}", token: sim-token, max_retries: 0, rate_limit_per_second: 0}}
machine_status: {{enabled: false}}
windows:
  - {{name: ytd, cumulative: year, timezone: Europe/Berlin}}
  - {{name: mtd, cumulative: month, timezone: Europe/Berlin, max_request_span: day}}
actors: [{{id: {ACTOR}, currency: EUR, machines: [{{id: {machines[0].id}}}]}}]
""",
        environ={},
    )


def client_for(config: Config) -> LynxClient:
    return LynxClient(
        config.lynx,
        observer=lambda _code, _seconds: None,
        rate_limiter=RateLimiter(0),
        token_gate=TokenGate(),
        stop=threading.Event(),
        rng=random.Random(1),
    )


class Poller:
    """Polls cumulative targets as the exporter does: the registry's kind, a real client."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.client = client_for(config)
        self.targets = {(t.window.name, t.actor_wide): t for t in build_targets(config)}

    def target(self, window_name: str, actor_wide: bool = False) -> Target:
        return self.targets[(window_name, actor_wide)]

    def poll(self, target: Target, moment: float) -> CumulativeReading:
        kind = KINDS[EV_DASHBOARD]
        answer = kind.fetch(self.client.get_json, target, datetime.fromtimestamp(moment, UTC))
        reading = kind.parse(answer.payload, target, self.config, moment)
        assert isinstance(reading, CumulativeReading)
        return reading


def truth(fleet: Fleet, target: Target, start: float, end: float) -> Totals:
    machine = None if target.machine_id is None else fleet.machine_by_id(target.machine_id)
    return fleet.totals(
        ACTOR, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), machine
    )


def assert_equals_truth(reading: CumulativeReading, expected: Totals) -> None:
    got = reading.figures
    assert got.charging_sessions == expected.sessions
    assert got.transactions == expected.transactions
    assert got.charging_duration_seconds == expected.duration_seconds
    assert got.sales_amount is not None and got.energy_joules is not None
    assert math.isclose(got.sales_amount, expected.sales_cents / 100, abs_tol=1e-6)
    assert math.isclose(got.energy_joules, expected.energy_wh * 3600.0, rel_tol=1e-9)


def dashboard_requests(vendor: SimulatorServer) -> list[tuple[str, str]]:
    return [(r.query["StartDate"], r.query["EndDate"]) for r in vendor.requests()]


def test_closed_months_are_asked_for_once_and_the_current_one_every_poll(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    poller = Poller(counters_config(vendor, history_fleet))
    ytd = poller.target("ytd")
    first = poller.poll(ytd, NOW)
    assert len(vendor.requests()) == 5  # January to April, then May so far
    assert first.anchor == at(2025, 1, 1)
    assert_equals_truth(first, truth(history_fleet, ytd, at(2025, 1, 1), NOW))
    vendor.clear_requests()
    later = NOW + 600
    vendor.clock.set(later, rate=0.0)
    second = poller.poll(ytd, later)
    assert dashboard_requests(vendor) == [("2025-04-30T22:00:00Z", "2025-05-20T08:10:00Z")]
    assert_equals_truth(second, truth(history_fleet, ytd, at(2025, 1, 1), later))
    assert second.figures.charging_sessions >= first.figures.charging_sessions  # type: ignore[operator]


def test_a_restarted_exporter_publishes_the_same_values(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    """Nothing is kept on disk: new target objects (a new process) ask again and
    get the vendor's same figures."""
    config = counters_config(vendor, history_fleet)
    before = Poller(config)
    for name, actor_wide in (("ytd", False), ("ytd", True), ("mtd", False)):
        before.poll(before.target(name, actor_wide), NOW - 3600)
        kept = before.poll(before.target(name, actor_wide), NOW)
        restarted = Poller(config)
        assert restarted.poll(restarted.target(name, actor_wide), NOW) == kept


def test_a_refund_keeps_the_high_water_mark_and_counts_a_correction(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    poller = Poller(counters_config(vendor, history_fleet))
    target = poller.target("ytd")
    assert target.machine_id is not None
    history = history_fleet.history(target.machine_id)
    refund = math.floor(history.refund_times(NOW, NOW + 60 * 86400)[0])
    before, after = refund - 1, refund + 2
    assert history.between(before, after).sessions == 0  # nothing else happens meanwhile
    vendor.clock.set(before, rate=0.0)
    high = poller.poll(target, before)
    assert high.corrections == 0
    vendor.clock.set(after, rate=0.0)
    held = poller.poll(target, after)
    vendor_sales = truth(history_fleet, target, at(2025, 1, 1), after).sales_cents / 100
    assert held.figures.sales_amount is not None and high.figures.sales_amount is not None
    assert vendor_sales < held.figures.sales_amount == high.figures.sales_amount
    assert held.corrections == 1
    assert held.figures.transactions == high.figures.transactions + 1  # type: ignore[operator]
    # Once the sales pass the mark again, the counter follows the vendor again.
    later = after + 3 * history.gap
    vendor.clock.set(later, rate=0.0)
    caught_up = poller.poll(target, later)
    assert_equals_truth(caught_up, truth(history_fleet, target, at(2025, 1, 1), later))
    assert caught_up.corrections == 1


def test_a_closed_part_read_with_a_problem_is_asked_for_again(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    """Never a partial sum: the unusable figure is not published until every part
    has it, the others are; the part is asked for again at the next poll."""
    poller = Poller(counters_config(vendor, history_fleet))
    target = poller.target("ytd")
    vendor.add_fault(
        Fault(
            kind=FaultKind.PATCH,
            patch={"MachineDashboard": {"TotalEnergyConsumption": "lots"}},
            remaining=1,  # January's answer: the poll's first request
        )
    )
    flawed = poller.poll(target, NOW)
    assert flawed.figures.energy_joules is None
    assert flawed.figures.charging_sessions is not None
    assert [p.reason for p in flawed.problems] == ["bad_payload"]
    assert "2024-12-31T23:00:00Z..2025-01-31T23:00:00Z" in flawed.problems[0].field
    vendor.clear_requests()
    whole = poller.poll(target, NOW)
    assert len(vendor.requests()) == 5  # every closed part again: none was kept after it
    assert whole.problems == ()
    assert_equals_truth(whole, truth(history_fleet, target, at(2025, 1, 1), NOW))


def test_a_failed_request_fails_the_poll_and_nothing_partial_is_published(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    poller = Poller(counters_config(vendor, history_fleet))
    target = poller.target("ytd", actor_wide=True)
    vendor.add_fault(Fault(kind=FaultKind.STATUS, status=503, remaining=1))
    with pytest.raises(LynxError):
        poller.poll(target, NOW)
    reading = poller.poll(target, NOW)  # every part asked for again, all answered
    assert_equals_truth(reading, truth(history_fleet, target, at(2025, 1, 1), NOW))


def test_at_the_boundary_the_month_counter_restarts_and_the_year_counter_goes_on(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    poller = Poller(counters_config(vendor, history_fleet))
    ytd, mtd = poller.target("ytd"), poller.target("mtd")
    before, after = at(2025, 5, 31, 23, 59, 50), at(2025, 6, 1, 0, 0, 10)
    vendor.clock.set(before, rate=0.0)
    for target in (ytd, mtd):
        poller.poll(target, before)
    vendor.clock.set(after, rate=0.0)
    vendor.clear_requests()
    year = poller.poll(ytd, after)
    assert len(vendor.requests()) == 2  # May, closed now, once; then June so far
    assert (year.anchor, year.corrections) == (at(2025, 1, 1), 0)
    assert_equals_truth(year, truth(history_fleet, ytd, at(2025, 1, 1), after))
    month = poller.poll(mtd, after)
    assert month.anchor == at(2025, 6, 1)  # a new `_created`: a real reset
    assert_equals_truth(month, truth(history_fleet, mtd, at(2025, 6, 1), after))


def test_a_month_asked_for_day_by_day_equals_the_vendor_month(
    vendor: SimulatorServer, history_fleet: Fleet
) -> None:
    poller = Poller(counters_config(vendor, history_fleet))
    mtd = poller.target("mtd", actor_wide=True)
    reading = poller.poll(mtd, NOW)
    assert len(vendor.requests()) == 20  # 1 to 19 May, then the 20th so far
    assert_equals_truth(reading, truth(history_fleet, mtd, at(2025, 5, 1), NOW))


# --- the exposition ----------------------------------------------------------------------

RENDER_AT = 1_800_000_000.0


def counters_store() -> tuple[SnapshotStore, Config]:
    config = parse_config(
        """
lynx: {token: t}
machine_status: {enabled: false}
windows: [{name: 24h, rolling: 24h}, {name: ytd, cumulative: year}]
actors:
  - {id: 7, name: Acme "Charging", currency: EUR, machines: [{id: 70, name: Bay 1}]}
""",
        environ={},
    )
    targets = build_targets(config)
    store = SnapshotStore(targets, config.poll.stale_after)
    outcomes = []
    for index, target in enumerate(targets):
        if target.window.cumulative is None:
            continue
        reading = CumulativeReading(
            anchor=1_767_225_600.0,
            operator=OperatorStatus(),
            figures=MachineFigures(
                charging_sessions=12.0 + index,
                transactions=13.0,
                sales_amount=99.5,
                charging_duration_seconds=3600.0,
                energy_joules=1.8e8 if target.actor_wide else None,  # absent stays absent
            ),
            corrections=index,
        )
        outcomes.append(PollOutcome(target.key, RENDER_AT - 5, reading))
    store.apply(outcomes)
    return store, config


def reference_families(snapshot: Snapshot, created: bool) -> list[Metric]:
    """prometheus_client's families for the same samples: gauges, then counters
    (with their `_created` in OpenMetrics)."""
    gauges = [GaugeMetricFamily(f.name, f.help, labels=list(f.labels)) for f in DATA_FAMILIES]
    counters = [
        CounterMetricFamily(f.name, f.help, labels=list(f.labels)) for f in COUNTER_FAMILIES
    ]
    for state in snapshot.states.values():
        for sample in state_samples(state, RENDER_AT, snapshot.stale_after):
            values = [v for _, v in sample.labels]
            if isinstance(sample, CounterSample):
                stamp = sample.created if created else None
                family = counters[COUNTER_INDEX[sample.family]]
                assert isinstance(family, CounterMetricFamily)
                family.add_metric(values, sample.value, created=stamp)
            else:
                gauge = gauges[FAMILY_INDEX[sample.family]]
                assert isinstance(gauge, GaugeMetricFamily)
                gauge.add_metric(values, sample.value)
    return [*gauges, *counters]


class _Collector(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def reference(snapshot: Snapshot, openmetrics: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(reference_families(snapshot, created=openmetrics)))
    if openmetrics:
        rendered: bytes = openmetrics_format.generate_latest(registry)  # type: ignore[no-untyped-call]
        return rendered
    text: bytes = text_format.generate_latest(registry)
    return text


def test_counters_render_as_prometheus_client_renders_them_in_each_format() -> None:
    store, _ = counters_store()
    bodies = DataRenderer().render_bodies(store.current(), RENDER_AT)
    assert bodies.counters is not None
    text, openmetrics = bodies.counters
    snapshot = store.current()
    assert bodies.plain + text.plain == reference(snapshot, openmetrics=False)
    assert bodies.plain + openmetrics.plain + b"# EOF\n" == reference(snapshot, openmetrics=True)
    for part in (text, openmetrics):
        assert gzip.decompress(part.gzipped) == part.plain


def test_each_format_types_its_counters_its_own_way() -> None:
    store, _ = counters_store()
    counters = DataRenderer().render_bodies(store.current(), RENDER_AT).counters
    assert counters is not None
    text_lines = counters[0].plain.decode().splitlines()
    om_lines = counters[1].plain.decode().splitlines()
    name = "nayax_ev_operator_cumulative_energy_joules"
    assert f"# TYPE {name}_total counter" in text_lines
    assert f"# TYPE {name} counter" in om_lines
    assert not any("_created{" in line for line in text_lines)  # no created gauges in text
    total = f'{name}_total{{actor="Acme \\"Charging\\"",actor_id="7",window="ytd"}} 1.8e+08'
    created = (
        f'{name}_created{{actor="Acme \\"Charging\\"",actor_id="7",window="ytd"}} 1.7672256e+09'
    )
    assert om_lines[om_lines.index(total) + 1] == created  # adjacent: one label set's samples


def test_the_served_bodies_parse_in_both_formats_and_pass_promtool() -> None:
    store, _ = counters_store()
    cache = ExpositionCache(store, CollectorRegistry(), clock=lambda: RENDER_AT)
    om_body, headers = cache.serve("application/openmetrics-text; version=1.0.0", None)
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    parsed = parse_openmetrics(om_body.decode())  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}  # the strict parser: a name clash would raise
    counter = families["nayax_ev_machine_cumulative_charging_sessions"]
    assert counter.type == "counter"
    assert {s.name for s in counter.samples} == {
        "nayax_ev_machine_cumulative_charging_sessions_total",
        "nayax_ev_machine_cumulative_charging_sessions_created",
    }
    assert families["nayax_ev_machine_cumulative_energy_joules"].samples == []  # absent
    text_body, _ = cache.serve(None, None)
    by_name = {f.name: f for f in parse_text(text_body.decode())}
    assert by_name["nayax_ev_cumulative_corrections"].type == "counter"
    promtool_check_metrics(text_body.decode())
    zipped, zipped_headers = cache.serve(None, "gzip")
    assert zipped_headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(zipped) == text_body


def test_without_a_cumulative_window_there_is_no_counter_part() -> None:
    config = parse_config("lynx: {token: t}\nactors: [{id: 7}]\n", environ={})
    store = SnapshotStore(build_targets(config), config.poll.stale_after)
    assert DataRenderer().render_bodies(store.current(), RENDER_AT).counters is None


def test_a_cumulative_target_needs_the_registry_wiring() -> None:
    """EvDashboard alone (without the registry's cumulative part) refuses a
    cumulative window instead of asking for a wrong range."""
    config = parse_config(
        "lynx: {token: t}\nwindows: [{name: ytd, cumulative: year}]\nactors: [{id: 7}]\n",
        environ={},
    )
    (target,) = build_targets(config)
    with pytest.raises(BadPayloadError, match="not wired"):
        EvDashboard().parse({}, target, config, RENDER_AT)
