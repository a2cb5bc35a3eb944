"""The landing page leads with actors, silent machines and failing targets, and stays
small at 10,000 targets (the full list is paged under targets/<n>)."""

from __future__ import annotations

import time

from exporter.config import parse_config
from exporter.kinds.ev_dashboard import MachineFigures, OperatorStatus, Reading
from exporter.kinds.machine_status import MachineStatus
from exporter.polling.store import PollOutcome, SnapshotStore
from exporter.targets import MACHINE_STATUS, MachineInfo, build_targets
from exporter.web.landing import (
    TARGETS_ON_LANDING,
    TARGETS_PER_PAGE,
    PageInfo,
    render_landing,
    render_target_page,
)
from exporter.web.routes import TARGET_PAGE

NOW = 1_800_000_000.0
INFO = PageInfo("1.0", "/metrics", "0/1", "c.yaml", 60.0, "http://api")
READING = Reading(OperatorStatus(), MachineFigures(), None, None)


def store_for(machines: int, silent: int, failing: int) -> SnapshotStore:
    config = parse_config(
        "lynx: {token: t}\nactors: [{id: 1, name: Acme, discover: true}]", environ={}
    )
    listed = tuple(
        MachineInfo(machine_id=1000 + i, name=f"Bay {i}", city="Porto") for i in range(machines)
    )
    targets = build_targets(config, discovered={1: listed})
    store = SnapshotStore(targets, 180.0)
    outcomes = []
    for index, target in enumerate(targets):
        if index < failing:
            outcomes.append(PollOutcome(target.key, NOW, None, "timeout", "timed out"))
        elif target.kind == MACHINE_STATUS:
            number = (target.machine_id or 0) - 1000
            age = 7200.0 + number if number < silent else 30.0
            reading = MachineStatus(last_keepalive=NOW - age, mqtt_connected=0.0)
            outcomes.append(PollOutcome(target.key, NOW, reading))
        else:
            outcomes.append(PollOutcome(target.key, NOW, READING))
    store.swap(outcomes)
    return store


def test_summary_silent_machines_and_failing_targets_come_first() -> None:
    page = render_landing(INFO, store_for(5, 2, 1).current(), NOW).decode()
    actors = page.index('id="actors"')
    silent = page.index('id="silent"')
    assert actors < silent < page.index('id="failing"') < page.index('id="targets"')
    assert "<td>Acme</td><td>5</td><td>2</td><td>1</td>" in page  # machines, silent, down
    # Longest silence first: Bay 1 (7201 s) before Bay 0 (7200 s).
    assert page.index("<td>Bay 1</td>", silent) < page.index("<td>Bay 0</td>", silent)
    assert "Porto" in page and "disconnected" in page and "2 h" in page
    assert "Silent machines (2)" in page and "Failing targets (1)" in page


def test_nothing_failing_or_silent_is_one_line_not_an_empty_table() -> None:
    page = render_landing(INFO, store_for(3, 0, 0).current(), NOW).decode()
    assert '<p id="failing" class="none">No target is failing.</p>' in page
    assert '<p id="silent" class="none">No machine has been silent for over an hour.</p>' in page
    assert '<table id="failing"' not in page and '<table id="silent"' not in page
    assert "Failing targets (0)" in page and "Silent machines (0)" in page
    targets = [state.target for state in store_for(3, 0, 0).current().states.values()]
    fresh = SnapshotStore(targets, 180.0).current()
    waiting = render_landing(INFO, fresh, NOW).decode()
    assert f"No target is failing; {len(fresh.states)} not polled yet." in waiting


def test_states_and_silent_machines_carry_their_colour() -> None:
    """Each target row's class names its state, which the page's inline style sheet
    colours (up green, down red, stale amber, pending grey); silent machines and an
    actor's non-zero silent and down counts are highlighted."""
    store = store_for(3, 1, 2)
    page = render_landing(INFO, store.current(), NOW).decode()
    style = page[page.index("<style>") : page.index("</style>")]
    for state, colour in (("up", "#c8e6c9"), ("down", "#ffcdd2"), ("stale", "#ffe0b2")):
        assert f"tr.{state} td.state{{background:{colour}}}" in style
    assert "tr.pending td.state{background:#eee" in style and "tr.silent td{" in style
    assert '<tr class="up"><td>1</td><td>Acme</td><td>Bay 1</td>' in page
    assert '<tr class="down"><td>1</td><td>Acme</td><td>(actor-wide)</td>' in page  # never up
    assert '<tr class="silent"><td>Bay 0</td><td>Acme</td>' in page
    assert '<tr class="with-silent with-down"><td>1</td><td>Acme</td>' in page
    # A target that was up and failed since: down, in red, until its data go stale.
    targets = [state.target for state in store.current().states.values()]
    target = targets[2]
    store.swap([PollOutcome(target.key, NOW + 60, None, "timeout", "timed out")])
    later = render_landing(INFO, store.current(), NOW + 60).decode()
    assert '<tr class="down"><td>1</td><td>Acme</td><td>Bay 1</td>' in later
    pending = SnapshotStore(targets, 180.0).current()
    assert '<tr class="pending">' in render_target_page(INFO, pending, NOW, 1).decode()


def test_ten_thousand_targets_stay_usable() -> None:
    snapshot = store_for(5000, 30, 50).current()
    total = len(snapshot.states)
    assert total > 10_000
    started = time.perf_counter()
    page = render_landing(INFO, snapshot, NOW)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # generous under a loaded CI machine; ~0.05 s idle
    assert page.count(b'<td class="state">') <= TARGETS_ON_LANDING * 2  # failing + first targets
    assert len(page) < 200_000
    assert f"Targets ({total})".encode() in page and b'href="targets/1"' in page
    last = -(-total // TARGETS_PER_PAGE)
    tail = render_target_page(INFO, snapshot, NOW, 10**6).decode()  # clamped to the last
    assert f"page {last} of {last}" in tail and 'href="../"' in tail and "next" not in tail
    first = render_target_page(INFO, snapshot, NOW, 1).decode()
    assert first.count('<td class="state">') == TARGETS_PER_PAGE and 'href="2"' in first


def test_target_page_route_is_strict() -> None:
    assert TARGET_PAGE.fullmatch("/targets/12")
    for path in ("/targets/0", "/targets/x", "/targets/1/2", "/targets/", "/targets/1234567"):
        assert not TARGET_PAGE.fullmatch(path)


def test_a_target_that_never_answered_is_down_not_stale() -> None:
    from exporter.polling.store import TargetState
    from exporter.web.landing import _state

    config = parse_config("lynx: {token: t}\nactors: [{id: 1}]\n", environ={})
    (target,) = build_targets(config)
    never = TargetState(target, polled=True, up=False, last_error="HTTP 503")
    assert _state(never, 1_000.0, 60.0) == "down"
