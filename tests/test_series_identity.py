"""Series identity is unique by construction: whatever names the API sends, no two
targets publish the same metric name and label set (exporter/targets/machines.py
``unique_labels``, the reserved window names in exporter/config/parse.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import (
    ActorConfig,
    Config,
    ConfigError,
    LynxConfig,
    MachineConfig,
    Secret,
    WindowConfig,
    parse_config,
)
from exporter.kinds.base import Family, Result
from exporter.kinds.discovery import Discovery
from exporter.kinds.ev_dashboard import MachineFigures, OperatorStatus, Reading
from exporter.kinds.machine_status import MachineStatus
from exporter.metrics.families import state_samples
from exporter.polling.store import TargetState
from exporter.targets import (
    DISCOVERY,
    EV_DASHBOARD,
    MachineInfo,
    build_targets,
    merge_machines,
    unique_labels,
)

NOW = 1_780_000_000.0
NAMES = st.sampled_from(["dup", "dup (1)", "dup (2)", "dup (1) (2)", "1", "2", "A", "x"])
MAYBE_NAME = st.none() | NAMES | st.text(max_size=4)


def test_a_name_that_looks_like_a_suffixed_name_gets_its_own_label() -> None:
    listed = [
        MachineInfo(7012, name="dup"),
        MachineInfo(7013, name="dup"),
        MachineInfo(7014, name="dup (7013)"),
    ]
    labels = [m.label for m in merge_machines((), listed)]
    assert labels == ["dup (7012)", "dup (7013) (2)", "dup (7013)"]


def test_unnamed_machines_keep_their_id_and_names_that_repeat_an_id_are_suffixed() -> None:
    assert unique_labels(["5", "5", "A"], [5, 7, 8], [None] * 3) == ["5", "5 (7)", "A"]
    assert unique_labels(["7", "7"], [None, 7], ["7", None]) == ["7 (7)", "7"]
    assert unique_labels(["", ""], [None, None], [None, "N1"]) == ["()", "(N1)"]


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Config, dict[int, tuple[MachineInfo, ...]]]:
    listed_ids = draw(st.lists(st.integers(1, 9), unique=True, max_size=7))
    listed = tuple(
        MachineInfo(
            machine_id,
            name=draw(MAYBE_NAME),
            number=draw(st.none() | st.sampled_from(["A", "B", "1", "dup"])),
        )
        for machine_id in listed_ids
    )
    configured_ids = draw(st.lists(st.integers(1, 12), unique=True, max_size=4))
    numbers = draw(st.lists(st.sampled_from(["A", "B", "C", "7"]), unique=True, max_size=2))
    machines = [MachineConfig(id=i, name=draw(st.none() | NAMES)) for i in configured_ids]
    machines += [MachineConfig(number=n, name=draw(st.none() | NAMES)) for n in numbers]
    # The config itself refuses two configured machines with one label.
    unique: dict[str, MachineConfig] = {m.label: m for m in machines}
    windows = draw(st.lists(st.sampled_from(["24h", "today", "dup"]), unique=True, min_size=1))
    config = Config(
        actors=(ActorConfig(id=1, name="Acme", machines=tuple(unique.values()), discover=True),),
        lynx=LynxConfig(token=Secret("t" * 20)),
        windows=tuple(WindowConfig(name=w, rolling=86400.0) for w in windows),
    )
    return config, {1: listed}


def full_reading(kind: str, machines: tuple[MachineInfo, ...]) -> Result:
    if kind == EV_DASHBOARD:
        return Reading(OperatorStatus(1, 1, 1, 1), MachineFigures(1, 1, 1, 1, 1), "kWh", None)
    if kind == DISCOVERY:
        return Discovery(machines)
    return MachineStatus(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_no_two_targets_publish_the_same_series(
    fleet: tuple[Config, dict[int, tuple[MachineInfo, ...]]],
) -> None:
    config, listings = fleet
    targets = build_targets(config, None, listings)
    series: Counter[tuple[Family, frozenset[tuple[str, str]]]] = Counter()
    for target in targets:
        reading = full_reading(target.kind, listings[1])
        state = TargetState(target, reading, last_success=NOW, up=True, polled=True)
        for sample in state_samples(state, NOW, 180.0):
            series[(sample.family, frozenset(sample.labels))] += 1
    duplicates = [key for key, count in series.items() if count > 1]
    assert not duplicates
    assert all(t.machine_label != "" for t in targets if not t.actor_wide)


@pytest.mark.parametrize("reserved", ["status", "discovery"])
def test_a_window_named_like_the_machine_targets_is_a_config_error(reserved: str) -> None:
    text = f"""
lynx: {{token: abcdefghijklmnopqrstuvwxyz}}
windows: [{{name: {reserved}, rolling: 1h}}]
actors: [{{id: 1}}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ={})
    assert caught.value.errors == (
        f"windows[0].name: {reserved!r} is the window label of the {reserved} targets; "
        "choose another name",
    )
