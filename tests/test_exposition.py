"""Store → samples → exposition: the metric contract, pinned byte for byte.

The golden file is the contract users' dashboards and alerts depend on; the
fast renderer must equal prometheus_client's own rendering of the same
snapshot, in both text and OpenMetrics, plain and gzip.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.kinds.ev_dashboard import parse_payload
from exporter.metrics.collector import SelfCollector
from exporter.metrics.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    DataRenderer,
    ExpositionCache,
)
from exporter.metrics.stats import POLL_ERROR_REASONS, Stats
from exporter.polling.store import PollOutcome, SnapshotStore, TargetState, apply_outcome
from exporter.targets import build_targets
from tests.harness import SeriesKey, parse_exposition, select
from tests.reference import SnapshotCollector, render_reference

GOLDEN = Path(__file__).parent / "golden" / "exposition.txt"
NOW = 1_800_000_000.0

CONFIG = """
lynx: {token: t}
machine_status: {enabled: false}
poll: {interval: 60s, stale_after: 5m}
windows: [{name: 24h, rolling: 24h}, {name: today, calendar: day}]
actors:
  - id: 2001492652
    name: Acme "Charging"
    currency: EUR
    machines: [{id: 942488501, name: Car park A1}, {number: "EV-0042"}]
  - id: 2001492653
"""

PAYLOAD = {
    "OperatorDashboard": {
        "TotalOperatorMachines": 12,
        "TotalCommunicatingMachines": 10,
        "TotalActiveMachines": 7,
        "TotalSilentMachines": 2,
    },
    "MachineDashboard": {
        "UnitOfMeasureSymbol": "kWh",
        "NumberOfChargingSessions": 40,
        "NumberOfTransactionsForTimeInterval": 41,
        "SalesAmountForTimeInterval": 312.5,
        "TotalChargingSessionsDuration": 7200,
        "TotalEnergyConsumption": 12.5,
    },
}


def populated_store() -> SnapshotStore:
    """Every target polled once at NOW-10, except the last actor's, which failed."""
    config = parse_config(CONFIG, environ={})
    targets = build_targets(config)
    store = SnapshotStore(targets, config.poll.stale_after)
    outcomes = []
    for target in targets:
        if target.actor_id == 2001492653:
            outcomes.append(
                PollOutcome(
                    key=target.key,
                    finished_at=NOW - 10,
                    reading=None,
                    error_reason="server_error",
                    error="HTTP 503: server error",
                )
            )
            continue
        reading = parse_payload(
            PAYLOAD,
            duration_unit="seconds",
            energy_unit="auto",
            want_operator=target.operator_status,
        )
        outcomes.append(PollOutcome(key=target.key, finished_at=NOW - 10, reading=reading))
    store.apply(outcomes)
    return store


def test_golden_exposition() -> None:
    body = DataRenderer().render_bodies(populated_store().current(), NOW).plain.decode()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(body)
    assert body == GOLDEN.read_text(), "metric contract changed; UPDATE_GOLDEN=1 if intended"


def test_contract_values_and_labels() -> None:
    series = parse_exposition(
        DataRenderer().render_bodies(populated_store().current(), NOW).plain.decode()
    )
    acme = {"actor_id": "2001492652", "actor": 'Acme "Charging"'}
    assert select(series, "nayax_ev_operator_machines", **acme).popitem()[1] == 12
    assert len(select(series, "nayax_ev_operator_silent_machines")) == 1  # failed actor: absent
    energy = select(
        series,
        "nayax_ev_machine_energy_joules",
        machine_id="942488501",
        machine="Car park A1",
        machine_number="",
        window="24h",
        **acme,
    )
    assert list(energy.values()) == [45_000_000.0]
    sales = select(series, "nayax_ev_operator_sales_amount", window="today", currency="EUR")
    assert list(sales.values()) == [312.5]
    by_number = select(series, "nayax_ev_machine_transactions", machine_number="EV-0042")
    assert {dict(k[1])["machine"] for k in by_number} == {"EV-0042"}
    up = select(series, "nayax_ev_target_up")
    assert len(up) == 8
    assert select(series, "nayax_ev_target_up", actor="2001492653", machine="").popitem()[1] == 0
    assert select(series, "nayax_ev_target_up", machine="Car park A1", window="24h").popitem()[
        1
    ] == (1)
    # The failed target never succeeded: it has no last-success sample at all.
    assert len(select(series, "nayax_ev_target_last_success_timestamp_seconds")) == 6


def test_ids_render_as_plain_integers() -> None:
    body = DataRenderer().render_bodies(populated_store().current(), NOW).plain.decode()
    assert 'machine_id="942488501"' in body
    assert 'actor_id="2001492652"' in body
    assert "e+08" not in body.split("nayax_ev_target_last_success")[0].replace("e+07 ", "")


def test_stale_readings_vanish_and_fresh_ones_return() -> None:
    store = populated_store()
    renderer = DataRenderer()
    stale_at = NOW - 10 + 300
    fresh = parse_exposition(renderer.render_bodies(store.current(), stale_at - 1).plain.decode())
    stale = parse_exposition(renderer.render_bodies(store.current(), stale_at).plain.decode())
    assert select(fresh, "nayax_ev_machine_energy_joules")
    assert not select(stale, "nayax_ev_machine_energy_joules")
    assert not select(stale, "nayax_ev_operator_machines")
    # Self-observation stays, so alerts on staleness keep working.
    assert len(select(stale, "nayax_ev_target_up")) == 8
    assert len(select(stale, "nayax_ev_target_last_success_timestamp_seconds")) == 6
    assert store.current().next_expiry(NOW) == stale_at


def test_fast_renderer_equals_prometheus_client() -> None:
    snapshot = populated_store().current()
    assert DataRenderer().render_bodies(snapshot, NOW).plain == render_reference(snapshot, NOW)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, NOW))
    openmetrics: bytes = om_generate_latest(registry)  # type: ignore[no-untyped-call]
    assert openmetrics == DataRenderer().render_bodies(snapshot, NOW).plain + b"# EOF\n"


def test_renderer_cache_follows_state_changes() -> None:
    store = populated_store()
    renderer = DataRenderer()
    first = renderer.render_bodies(store.current(), NOW).plain
    assert renderer.render_bodies(store.current(), NOW).plain == first  # cached, identical
    target = next(iter(store.current().states))
    store.apply([PollOutcome(key=target, finished_at=NOW, reading=None, error_reason="timeout")])
    changed = renderer.render_bodies(store.current(), NOW).plain
    assert changed == render_reference(store.current(), NOW)
    assert changed != first
    # A removed target disappears by construction.
    remaining = [s.target for k, s in store.current().states.items() if k != target]
    store.set_targets(remaining, 300.0)
    assert renderer.render_bodies(store.current(), NOW).plain == render_reference(
        store.current(), NOW
    )


def _one_gzip_member(data: bytes) -> bytes:
    """The payload of ``data``, asserting it is exactly one gzip member (zlib
    checks its CRC-32 and length) with nothing after it."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    payload = inflater.decompress(data)
    assert inflater.eof and inflater.unused_data == b""
    return payload


@pytest.mark.parametrize("segment_blocks", [1, 2, 8])
def test_gzip_body_follows_the_plain_body_through_reused_and_rerendered_blocks(
    monkeypatch: pytest.MonkeyPatch, segment_blocks: int
) -> None:
    """The gzip body is stitched from per-block segments, some compressed in an
    earlier render: after every kind of change it is one valid gzip member of
    exactly the plain body, which equals the reference. (With 2 blocks per
    served segment, a segment rebuilt around a changed block takes its other
    block's lines from the last segment.)"""
    from exporter.metrics import exposition

    monkeypatch.setattr(exposition, "BLOCK_SIZE", 3)
    monkeypatch.setattr(exposition, "SEGMENT_BLOCKS", segment_blocks)
    store = populated_store()
    renderer = DataRenderer()
    keys = list(store.current().states)

    def check(now: float) -> bytes:
        bodies = renderer.render_bodies(store.current(), now)
        assert bodies.plain == render_reference(store.current(), now)
        assert _one_gzip_member(bodies.gzipped) == bodies.plain
        assert gzip.decompress(bodies.gzipped) == bodies.plain
        return bodies.plain

    first = check(NOW)
    assert check(NOW) == first  # every block reused from the last bodies
    store.apply([PollOutcome(key=keys[4], finished_at=NOW, reading=None, error_reason="timeout")])
    assert check(NOW) != first  # the middle block rendered again, its neighbours reused
    check(NOW - 10 + 300)  # readings went stale: blocks with readings rendered again
    check(NOW)  # and back (clock stepped back)
    store.set_targets([s.target for k, s in store.current().states.items() if k != keys[0]], 300.0)
    check(NOW)  # a removed target shifts every block: all rendered again
    store.set_targets([], 300.0)
    assert check(NOW) == b"".join(
        line.encode() + b"\n" for line in first.decode().splitlines() if line.startswith("#")
    )  # no targets: the headers alone


def test_a_render_shares_the_unchanged_segments_with_the_last_bodies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bodies are segments, one per family and run of blocks: after a poll
    lands, only the segments of its target's run are new bytes; every other one
    is the very object the last bodies hold, so the lines are held once."""
    from exporter.metrics import exposition

    # 8 targets in 4 runs of 2: the first run is actor 2001492652's 24h actor-wide
    # target and its machine "Car park A1".
    monkeypatch.setattr(exposition, "BLOCK_SIZE", 1)
    monkeypatch.setattr(exposition, "SEGMENT_BLOCKS", 2)
    store = populated_store()
    renderer = DataRenderer()
    old = renderer.render_bodies(store.current(), NOW)
    first = next(iter(store.current().states))
    store.apply([PollOutcome(key=first, finished_at=NOW, reading=None, error_reason="timeout")])
    new = renderer.render_bodies(store.current(), NOW)

    assert new.plain == render_reference(store.current(), NOW)
    assert _one_gzip_member(new.gzipped) == new.plain

    def split(segments: tuple[bytes, ...], last: tuple[bytes, ...]) -> tuple[bytes, bytes]:
        kept = [id(segment) for segment in last]
        shared = b"".join(s for s in segments if id(s) in kept)
        copied = b"".join(s for s in segments if id(s) not in kept)
        return shared, copied

    shared, copied = split(new.segments, old.segments)
    copied_lines = copied.decode().splitlines()
    assert any('nayax_ev_target_up{actor="Acme' in line for line in copied_lines)
    for line in copied_lines:  # the first run's lines alone
        assert 'window="today"' not in line and "EV-0042" not in line, line
        assert "2001492653" not in line, line
    assert 'window="today"' in shared.decode() and "2001492653" in shared.decode()
    shared_gzip, copied_gzip = split(new.gzip_segments, old.gzip_segments)
    assert len(copied_gzip) < len(shared_gzip)  # the first run's and the trailer


def make_cache(store: SnapshotStore, stats: Stats | None = None) -> ExpositionCache:
    if stats is None:
        stats = Stats(started_at=NOW)
        stats.observe_request("200", 0.2)
        stats.count_poll_error(2001492653, "server_error")
    stats.track_actors((2001492652, 2001492653))
    registry = stats.registry
    registry.register(SelfCollector(version="1.2.3", shard=lambda: "0/1", target_count=lambda: 8))
    cache = ExpositionCache(
        store,
        registry,
        errors_registry=stats.errors_registry,
        errors_version=lambda: stats.poll_errors_version,
        clock=lambda: NOW,
    )
    cache.refresh()
    return cache


def test_content_negotiation_and_gzip() -> None:
    cache = make_cache(populated_store())
    text, headers = cache.serve("text/plain", None)
    # Negotiated by client_python's own choose_encoder: what its server would answer.
    assert headers == {"Content-Type": choose_encoder("text/plain")[1]}
    assert cache.serve(None, None)[1] == {"Content-Type": choose_encoder("")[1]}
    _, latest = cache.serve("text/plain; version=1.0.0", None)
    assert latest["Content-Type"].startswith(TEXT_CONTENT_TYPE)
    families = {f.name for f in text_string_to_metric_families(text.decode())}
    assert {"nayax_ev_operator_machines", "nayax_ev_api_requests", "nayax_ev_build_info"} <= (
        families
    )
    assert b"# EOF" not in text

    accept = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
    om, headers = cache.serve(accept, None)
    assert headers["Content-Type"] == choose_encoder(accept)[1]
    assert cache.serve("application/openmetrics-text", None)[1] == {
        "Content-Type": OPENMETRICS_CONTENT_TYPE
    }
    assert om.endswith(b"# EOF\n") and om.count(b"# EOF") == 1
    assert b"nayax_ev_api_requests_total" in om

    zipped, headers = cache.serve(None, "deflate, gzip;q=1.0")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped) == text  # two gzip members read as one stream
    _, plain_headers = cache.serve(None, "identity")
    assert "Content-Encoding" not in plain_headers
    assert cache.serve(None, "GZIP")[1]["Content-Encoding"] == "gzip"  # as gzip_accepted says
    for refused in ("gzip;q=0", "gzip; Q=0.00, identity", "identity,gzip;q=0"):
        assert "Content-Encoding" not in cache.serve(None, refused)[1], refused
    assert cache.serve(None, "gzip;q=0.001")[1]["Content-Encoding"] == "gzip"


def test_self_families() -> None:
    cache = make_cache(populated_store())
    series = parse_exposition(cache.serve(None, None)[0].decode())
    assert select(series, "nayax_ev_api_requests_total", code="200").popitem()[1] == 1
    assert (
        select(
            series, "nayax_ev_poll_errors_total", actor_id="2001492653", reason="server_error"
        ).popitem()[1]
        == 1
    )
    assert select(series, "nayax_ev_api_request_duration_seconds_bucket", le="0.25").popitem()[
        1
    ] == (1)
    assert select(series, "nayax_ev_api_request_duration_seconds_bucket", le="0.1").popitem()[
        1
    ] == (0)
    assert select(series, "nayax_ev_build_info", version="1.2.3").popitem()[1] == 1
    assert select(series, "nayax_ev_shard_info", index="0", count="1").popitem()[1] == 1
    assert select(series, "nayax_ev_targets").popitem()[1] == 8
    assert select(series, "nayax_ev_config_last_reload_successful").popitem()[1] == 1


@pytest.mark.parametrize("accept", [None, "application/openmetrics-text"])
def test_poll_error_counters_are_reused_until_one_moves(
    monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    stats = Stats(started_at=NOW)
    cache = make_cache(populated_store(), stats)
    renders: list[bool] = []
    real_collect = stats.errors_registry.collect

    def counting_collect() -> Iterable[Metric]:
        renders.append(True)
        return real_collect()

    monkeypatch.setattr(stats.errors_registry, "collect", counting_collect)

    def errors_of(body: bytes) -> dict[SeriesKey, float]:
        return select(parse_exposition(body.decode()), "nayax_ev_poll_errors_total")

    first = errors_of(cache.serve(accept, None)[0])
    assert len(first) == 2 * len(POLL_ERROR_REASONS) and set(first.values()) == {0}
    stats.observe_request("200", 0.1)  # request counters move; poll errors do not
    again, _ = cache.serve(accept, None)
    assert errors_of(again) == first and len(renders) == 1
    assert select(parse_exposition(again.decode()), "nayax_ev_api_requests_total")
    stats.count_poll_error(2001492652, "timeout")
    moved = errors_of(gzip.decompress(cache.serve(accept, "gzip")[0]))
    assert len(renders) == 2
    assert select(moved, "nayax_ev_poll_errors_total", actor_id="2001492652", reason="timeout")
    assert sum(moved.values()) == 1
    if accept:  # one EOF, at the very end, however the parts were cached
        body = cache.serve(accept, None)[0]
        assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


def test_apply_outcome_keeps_last_reading_on_failure() -> None:
    store = populated_store()
    key, state = next(iter(store.current().states.items()))
    failed = apply_outcome(
        state, PollOutcome(key=key, finished_at=NOW, reading=None, error_reason="timeout")
    )
    assert failed.reading is state.reading and failed.last_success == state.last_success
    assert (failed.up, failed.last_error_reason) == (False, "timeout")


def test_process_metrics_are_cached_but_counters_are_fresh() -> None:
    from prometheus_client.process_collector import ProcessCollector

    stats = Stats(started_at=NOW)
    registry = stats.registry
    registry.register(SelfCollector(version="1", shard=lambda: "0/1", target_count=lambda: 8))
    process_registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=process_registry)
    cache = ExpositionCache(populated_store(), registry, process_registry=process_registry)
    om, _ = cache.serve("application/openmetrics-text", None)
    assert om.endswith(b"# EOF\n") and om.count(b"# EOF") == 1
    assert b"process_resident_memory_bytes" in om
    text, _ = cache.serve(None, None)
    assert b"process_resident_memory_bytes" in text and b"# EOF" not in text
    # A counter moves on the very next scrape, while process metrics are reused.
    stats.observe_request("503", 0.1)
    series = parse_exposition(cache.serve(None, None)[0].decode())
    assert select(series, "nayax_ev_api_requests_total", code="503").popitem()[1] == 1
    assert gzip.decompress(cache.serve(None, "gzip")[0]).count(b"\nprocess_open_fds ") == 1


def test_reload_keeps_unchanged_states_and_updates_renamed_ones() -> None:
    from dataclasses import replace

    store = populated_store()
    renderer = DataRenderer()
    renderer.render_bodies(store.current(), NOW)  # fills its per-state cache
    before = store.current().states
    renamed_key = next(iter(before))
    targets = [
        replace(s.target, actor="Renamed") if k == renamed_key else s.target
        for k, s in before.items()
    ]
    after = store.set_targets(targets, 300.0).states
    unchanged = [k for k in before if k != renamed_key]
    # Same objects: the renderer's per-state cache survives a no-op reload.
    assert all(after[k] is before[k] for k in unchanged)
    renamed = after[renamed_key]
    assert renamed is not before[renamed_key] and renamed.target.actor == "Renamed"
    assert renamed.reading is before[renamed_key].reading  # its data is kept
    body = renderer.render_bodies(store.current(), NOW).plain
    assert body == render_reference(store.current(), NOW)
    assert b'actor="Renamed"' in body


def test_block_cache_rerenders_only_what_changed_and_what_went_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from exporter.metrics import exposition

    monkeypatch.setattr(exposition, "BLOCK_SIZE", 3)  # 8 targets: blocks of 3, 3, 2
    store = populated_store()
    renderer = DataRenderer()
    rendered: list[int] = []
    real = exposition._render_block

    def counting(
        states: tuple[TargetState, ...], now: float, stale_after: float, guard: object
    ) -> object:
        rendered.append(len(states))
        return real(states, now, stale_after, None)

    monkeypatch.setattr(exposition, "_render_block", counting)
    renderer.render_bodies(store.current(), NOW)
    assert rendered == [3, 3, 2]
    rendered.clear()
    assert renderer.render_bodies(store.current(), NOW).plain == render_reference(
        store.current(), NOW
    )
    assert rendered == []  # nothing changed: every block reused
    last = list(store.current().states)[-1]
    store.apply([PollOutcome(key=last, finished_at=NOW, reading=None, error_reason="timeout")])
    assert renderer.render_bodies(store.current(), NOW).plain == render_reference(
        store.current(), NOW
    )
    assert rendered == [2]  # only the last block held the changed target
    rendered.clear()
    stale_at = NOW - 10 + 300  # populated_store's readings arrived at NOW - 10
    assert renderer.render_bodies(store.current(), stale_at).plain == render_reference(
        store.current(), stale_at
    )
    # Exactly the blocks holding a reading (now stale) were rendered again.
    states = list(store.current().states.values())
    with_readings = [
        len(block)
        for block in (states[0:3], states[3:6], states[6:8])
        if any(state.last_success is not None for state in block)
    ]
    assert rendered == with_readings and 0 < len(with_readings) < 3
    rendered.clear()
    # A wall clock stepped back (an NTP correction) brings the readings back: the
    # blocks rendered at the later time are rendered again.
    assert renderer.render_bodies(store.current(), NOW).plain == render_reference(
        store.current(), NOW
    )
    assert rendered == with_readings


def test_self_counters_have_no_created_series_and_follow_the_configured_actors() -> None:
    stats = Stats(started_at=NOW)
    cache = make_cache(populated_store(), stats)  # actors 2001492652 and 2001492653
    stats.observe_request("200", 0.3)
    stats.count_deferral("rate_limited")
    stats.count_poll_error(2001492653, "timeout")
    om = cache.serve("application/openmetrics-text", None)[0].decode()
    assert "_created" not in om
    series = parse_exposition(cache.serve(None, None)[0].decode())
    assert select(series, "nayax_ev_polls_deferred_total", reason="rate_limited") == {
        ("nayax_ev_polls_deferred_total", frozenset({("reason", "rate_limited")})): 1.0
    }
    assert select(series, "nayax_ev_api_request_duration_seconds_count").popitem()[1] == 1

    def poll_errors() -> dict[SeriesKey, float]:
        body = cache.serve(None, None)[0].decode()
        return select(parse_exposition(body), "nayax_ev_poll_errors_total")

    # A reload that keeps the actors leaves the rendered counters valid.
    version = stats.poll_errors_version
    stats.track_actors((2001492653, 2001492652))
    assert stats.poll_errors_version == version
    # A reload that adds actor 7 and drops 2001492652: 7's counters start at 0,
    # the dropped actor's disappear, the kept actor's keep counting.
    stats.track_actors((7, 2001492653))
    assert stats.poll_errors_version != version
    errors = poll_errors()
    assert {dict(k[1])["actor_id"] for k in errors} == {"7", "2001492653"}
    assert len(errors) == 2 * len(POLL_ERROR_REASONS)
    assert sum(errors.values()) == 1
    assert select(errors, "nayax_ev_poll_errors_total", actor_id="2001492653", reason="timeout")


def test_a_render_to_the_same_lines_keeps_the_served_segments() -> None:
    """A reload that changes the staleness limit but no line renders every
    block again, yet to the same bytes: the new bodies are the very segments
    already served, so the lines are not held twice."""
    from exporter.polling.store import Snapshot

    store = populated_store()
    renderer = DataRenderer()
    old = renderer.render_bodies(store.current(), NOW)
    current = store.current()
    copied = Snapshot(
        states=current.states,
        stale_after=current.stale_after + 60.0,  # every reading still fresh at NOW
        generation=current.generation + 1,
    )
    new = renderer.render_bodies(copied, NOW)
    assert new.plain == old.plain == render_reference(copied, NOW)
    assert [id(s) for s in new.segments] == [id(s) for s in old.segments]
    # All but the gzip trailer, packed afresh per render.
    assert [id(s) for s in new.gzip_segments[:-1]] == [id(s) for s in old.gzip_segments[:-1]]
