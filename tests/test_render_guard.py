"""Rendering can never die from data (exporter/metrics/render_guard.py): a target that fails
to render is shown as down, counted as ``internal`` and logged once per change;
every other target, ``/``, ``/metrics`` and the render thread go on."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from types import MappingProxyType

from prometheus_client import CollectorRegistry

from exporter.logs import SecretScrubber, configure
from exporter.metrics.exposition import DataRenderer, ExpositionCache
from exporter.metrics.render_guard import RenderGuard
from exporter.polling.store import Snapshot, SnapshotStore
from exporter.targets import TargetKey
from exporter.web.landing import PageInfo, render_landing, render_target_page
from tests.harness import parse_exposition, select
from tests.test_exposition import NOW, populated_store

INFO = PageInfo("1.0", "/metrics", "0/1", "c.yaml", 60.0, "https://lynx.test")


def guarded() -> tuple[RenderGuard, list[tuple[int, str]], io.StringIO]:
    counted: list[tuple[int, str]] = []
    stream = io.StringIO()
    log = configure("info", "json", SecretScrubber(), stream)
    return RenderGuard(log, lambda actor, reason: counted.append((actor, reason))), counted, stream


def with_a_poisoned_target(store: SnapshotStore) -> tuple[Snapshot, TargetKey]:
    """The store's snapshot with one machine target renamed to a lone surrogate, as
    only a bug past the upstream boundary could produce."""
    snapshot = store.current()
    key = next(k for k, s in snapshot.states.items() if s.target.machine_label == "Car park A1")
    states = dict(snapshot.states)
    target = states[key].target
    assert target.machine is not None
    poisoned = replace(target, machine=replace(target.machine, label="bad\ud800"))
    states[key] = replace(states[key], target=poisoned)
    return replace(snapshot, states=MappingProxyType(states)), key


def events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def test_one_target_that_cannot_render_is_down_and_the_rest_publish() -> None:
    guard, counted, stream = guarded()
    snapshot, bad = with_a_poisoned_target(populated_store())
    renderer = DataRenderer(guard)
    body = renderer.render_bodies(snapshot, NOW).plain.decode("utf-8")
    series = parse_exposition(body)
    up = select(series, "nayax_ev_target_up")
    assert len(up) == len(snapshot.states)  # every target still says whether it is up
    assert select(series, "nayax_ev_target_up", machine="bad\\ud800") != {}
    assert list(select(series, "nayax_ev_target_up", machine="bad\\ud800").values()) == [0.0]
    assert select(series, "nayax_ev_machine_energy_joules", machine="EV-0042")  # the others
    assert counted == [(bad.actor_id, "internal")]
    renderer.render_bodies(snapshot, NOW + 1)  # the same state again: counted and logged once
    assert counted == [(bad.actor_id, "internal")]
    assert events(stream) == ["target could not be rendered; shown as down"]


def test_a_target_that_renders_again_is_logged_as_recovered() -> None:
    guard, _, stream = guarded()
    store = populated_store()
    snapshot, bad = with_a_poisoned_target(store)
    renderer = DataRenderer(guard)
    renderer.render_bodies(snapshot, NOW)
    assert guard.failing == {(bad, "metrics")}
    renderer.render_bodies(store.current(), NOW)  # the store's own, healthy states
    assert guard.failing == frozenset()
    assert events(stream)[-1] == "target rendered again"


def test_pages_show_the_other_targets_and_say_which_could_not_be_shown() -> None:
    guard, counted, _ = guarded()
    snapshot, bad = with_a_poisoned_target(populated_store())
    for page in (
        render_landing(INFO, snapshot, NOW, guard),
        render_target_page(INFO, snapshot, NOW, 1, guard),
    ):
        text = page.decode("utf-8")
        assert f"target {bad} could not be shown" in text
        assert "EV-0042" in text
    assert counted == [(bad.actor_id, "internal")]  # once for the pages, whatever their number
    assert guard.failing == {(bad, "page")}


def test_the_render_thread_outlives_a_failed_render() -> None:
    store = populated_store()
    errors: list[BaseException] = []
    rendered = threading.Event()
    cache = ExpositionCache(store, CollectorRegistry(), min_gap=lambda: 0.0, on_error=errors.append)
    calls = {"n": 0}
    real = cache._renderer.render_bodies

    def flaky(snapshot: Snapshot, now: float) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("one bad render")
        rendered.set()
        return real(snapshot, now)

    cache._renderer.render_bodies = flaky  # type: ignore[method-assign,assignment]
    cache.start()
    try:
        store.apply([])  # no change: poke with a reload of the same targets instead
        store.set_targets([s.target for s in store.current().states.values()], 300.0)
        assert rendered.wait(10), "the thread rendered again after the failure"
        assert cache.alive
        assert [type(e).__name__ for e in errors] == ["MemoryError"]
    finally:
        cache.stop()
