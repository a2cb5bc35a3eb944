"""Sharding (``--shard INDEX/COUNT``): COUNT replicas split the targets between them.

Properties proven here: the replicas together poll every target exactly once,
the split is even, adding a replica moves only the targets the new replica
wins (~1/(COUNT+1)), the assignment does not depend on the process (no
per-process hash randomisation), bad ``--shard`` values are refused, and two
real exporter processes sharing one simulator publish every target once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import (
    ActorConfig,
    Config,
    LynxConfig,
    MachineConfig,
    MachineStatusConfig,
    Secret,
    WindowConfig,
    load_config,
)
from exporter.simulator import SimulatorServer
from exporter.targets import Shard, Target, TargetKey, build_targets, shard_of
from tests.harness import (
    REPO,
    ExporterProcess,
    parse_exposition,
    running_exporter,
    select,
    simulator_config,
    wait_for,
    write_config,
)

MAX_COUNT = 12


# --- fleets ---------------------------------------------------------------------


def make_config(
    machines_per_actor: Sequence[Sequence[MachineConfig]], windows: Sequence[str]
) -> Config:
    actors = tuple(
        ActorConfig(id=1000 + index, name=f"actor-{index}", machines=tuple(machines))
        for index, machines in enumerate(machines_per_actor)
    )
    return Config(
        actors=actors,
        lynx=LynxConfig(token=Secret("t")),
        windows=tuple(WindowConfig(name=name, rolling=3600.0) for name in windows),
        machine_status=MachineStatusConfig(enabled=False),  # evDashboard keys only
    )


def big_fleet(targets: int) -> tuple[TargetKey, ...]:
    """``targets`` distinct keys shaped like a real fleet: 20 actors, machines by
    id and by number, one window."""
    per_actor = targets // 20
    machines = [
        [
            MachineConfig(id=900_000 + a * 1000 + m) if m % 2 else MachineConfig(number=f"N{a}-{m}")
            for m in range(per_actor - 1)  # plus the actor-wide target
        ]
        for a in range(20)
    ]
    keys = tuple(t.key for t in build_targets(make_config(machines, ["24h"])))
    assert len(set(keys)) == len(keys) == targets
    return keys


machine_configs = st.one_of(
    st.integers(min_value=1, max_value=10**9).map(lambda n: MachineConfig(id=n)),
    st.text("ABCDEFGHJK0123456789-/", min_size=1, max_size=8).map(
        lambda s: MachineConfig(number=s)
    ),
)
fleets = st.lists(
    st.lists(machine_configs, max_size=15, unique_by=lambda m: (m.id, m.number)),
    min_size=1,
    max_size=6,
)
window_lists = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=6),
    min_size=1,
    max_size=3,
    unique=True,
)


# --- partition ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(machines=fleets, windows=window_lists)
def test_replicas_cover_every_target_exactly_once(
    machines: list[list[MachineConfig]], windows: list[str]
) -> None:
    config = make_config(machines, windows)
    everything = build_targets(config)
    for count in range(1, MAX_COUNT + 1):
        shares = [build_targets(config, Shard(index, count)) for index in range(count)]
        polled = Counter(target.key for share in shares for target in share)
        assert polled == Counter(target.key for target in everything), f"COUNT={count}"
        assert max(polled.values()) == 1
        for share in shares:
            # Each share keeps config order (a subsequence of the full list), so the
            # landing page and the schedule are stable too.
            positions = [everything.index(target) for target in share]
            assert positions == sorted(positions)


def test_shard_0_of_1_and_no_shard_are_the_whole_list() -> None:
    config = make_config([[MachineConfig(id=1), MachineConfig(number="x")]], ["a", "b"])
    assert (
        build_targets(config, Shard(0, 1)) == build_targets(config) == build_targets(config, None)
    )
    assert len(build_targets(config)) == 6


def test_operator_status_target_is_owned_by_exactly_one_replica() -> None:
    # One target per actor publishes the operator status; sharding must not drop
    # it or duplicate it (it is an ordinary target, so it has exactly one owner).
    config = make_config([[MachineConfig(id=n) for n in range(8)] for _ in range(5)], ["a", "b"])
    for count in range(1, MAX_COUNT + 1):
        owners: Counter[int] = Counter()
        for index in range(count):
            owners.update(
                t.actor_id for t in build_targets(config, Shard(index, count)) if t.operator_status
            )
        assert owners == Counter({actor.id: 1 for actor in config.actors}), f"COUNT={count}"


def test_split_is_even() -> None:
    keys = big_fleet(2000)
    for count in range(2, MAX_COUNT + 1):
        sizes = Counter(shard_of(key, count) for key in keys)
        assert set(sizes) == set(range(count))
        expected = len(keys) / count
        # Binomial spread: 4 standard deviations at COUNT=12 is about 30 %.
        worst = max(abs(size - expected) / expected for size in sizes.values())
        assert worst < 0.3, f"COUNT={count}: {sorted(sizes.items())}"


def test_adding_a_replica_moves_only_what_the_new_replica_wins() -> None:
    keys = big_fleet(2000)
    for count in range(1, MAX_COUNT):
        before = {key: shard_of(key, count) for key in keys}
        after = {key: shard_of(key, count + 1) for key in keys}
        moved = [key for key in keys if before[key] != after[key]]
        # Rendezvous hashing: a target either stays or goes to the new replica...
        assert all(after[key] == count for key in moved), f"COUNT {count}->{count + 1}"
        # ...so removing the highest replica (StatefulSet scale-down) only
        # redistributes that replica's targets, and the share that moves is ~1/(COUNT+1).
        share = len(moved) / len(keys)
        assert 0.5 / (count + 1) <= share <= 1.5 / (count + 1), (
            f"COUNT {count}->{count + 1}: {share:.3f} of targets moved"
        )


# --- stability ------------------------------------------------------------------

_ASSIGN = """
import json, sys
from exporter.targets import TargetKey, shard_of
keys = [TargetKey(*k) for k in json.load(sys.stdin)]
print(json.dumps([[shard_of(k, c) for c in range(1, 13)] for k in keys]))
"""


def assignments_in_subprocess(keys: Sequence[TargetKey], hash_seed: str) -> list[list[int]]:
    result = subprocess.run(
        [sys.executable, "-c", _ASSIGN],
        input=json.dumps([[k.actor_id, k.machine_ref, k.window, k.kind] for k in keys]),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        timeout=60,
    )
    assignments: list[list[int]] = json.loads(result.stdout)
    return assignments


def test_assignment_is_the_same_in_every_process() -> None:
    keys = big_fleet(400)
    here = [[shard_of(k, c) for c in range(1, MAX_COUNT + 1)] for k in keys]
    assert here == [[shard_of(k, c) for c in range(1, MAX_COUNT + 1)] for k in keys]
    # Different hash seeds: str hashing is randomised per process, the shard must not be.
    assert assignments_in_subprocess(keys, "1") == here
    assert assignments_in_subprocess(keys, "4242") == here
    # Sanity: the comparison above compares something non-trivial.
    assert len({row[-1] for row in here}) == MAX_COUNT


def test_assignment_depends_only_on_the_key_not_on_the_rest_of_the_config() -> None:
    # A reload that adds actors must not reshuffle the targets that were already there.
    small = make_config([[MachineConfig(id=n) for n in range(30)]], ["24h"])
    large = make_config(
        [[MachineConfig(id=n) for n in range(30)], [MachineConfig(id=n) for n in range(50)]],
        ["24h", "today"],
    )
    for count in (2, 3, 5):
        for index in range(count):
            small_keys = {t.key for t in build_targets(small, Shard(index, count))}
            large_keys = {t.key for t in build_targets(large, Shard(index, count))}
            assert small_keys <= large_keys


# --- Shard.parse ----------------------------------------------------------------


@given(
    st.integers(min_value=1, max_value=10_000).flatmap(
        lambda count: st.tuples(st.integers(min_value=0, max_value=count - 1), st.just(count))
    )
)
def test_parse_round_trips(shard: tuple[int, int]) -> None:
    index, count = shard
    parsed = Shard.parse(f"{index}/{count}")
    assert parsed == Shard(index, count)
    assert str(parsed) == f"{index}/{count}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "/",
        "0/",
        "/2",
        "a/b",
        "1/2/3",
        "0.5/2",
        "2/2",
        "3/2",
        "-1/2",
        "0/0",
        "0/-1",
        "1 of 2",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="--shard") as caught:
        Shard.parse(text)
    assert "INDEX" in str(caught.value) or "COUNT" in str(caught.value)


def test_cli_rejects_a_bad_shard_with_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--shard=3/3", "--config.check"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--shard '3/3'" in result.stderr


def test_config_check_counts_only_this_shards_targets(tmp_path: Path) -> None:
    document = simulator_config(
        "http://127.0.0.1:1",
        [{"id": 10 + a, "machines": [{"id": 100 * a + m + 1} for m in range(7)]} for a in range(3)],
    )
    path = write_config(tmp_path / "config.yaml", document)
    total = len(build_targets(load_config(path)))
    counts = []
    for index in range(3):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "exporter",
                f"--config.file={path}",
                f"--shard={index}/3",
                "--config.check",
            ],
            check=False,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        counts.append(int(result.stdout.split(" target(s)")[0].rsplit(", ", 1)[1]))
    assert sum(counts) == total == 24
    assert all(counts)


# --- live: two replicas against one simulator -------------------------------------


def target_identity(target: Target) -> tuple[str, str, str, str]:
    return (str(target.actor_id), target.actor, target.machine_label, target.window.name)


def published_targets(exporter: ExporterProcess) -> Counter[tuple[str, str, str, str]]:
    series = exporter.series()
    published: Counter[tuple[str, str, str, str]] = Counter()
    for (_, labels), _value in select(series, "nayax_ev_target_up").items():
        label = dict(labels)
        published[(label["actor_id"], label["actor"], label["machine"], label["window"])] += 1
    return published


def all_up(exporter: ExporterProcess) -> bool:
    up = select(exporter.series(), "nayax_ev_target_up")
    return bool(up) and all(value == 1.0 for value in up.values())


def test_two_replicas_publish_every_target_exactly_once(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    fleet = simulator.fleet
    actors = [
        {
            "id": actor_id,
            "name": f"Operator {n}",
            "machines": [
                {"id": m.id} if i % 2 == 0 else {"number": m.number}
                for i, m in enumerate(fleet.machines(actor_id))
            ],
        }
        for n, actor_id in enumerate(fleet.actor_ids())
    ]
    windows = [{"name": "24h", "rolling": "24h"}, {"name": "1h", "rolling": "1h"}]
    path = write_config(
        tmp_path / "config.yaml", simulator_config(simulator.url, actors, windows=windows)
    )
    config = load_config(path)
    everything = Counter(target_identity(t) for t in build_targets(config))
    assert len(everything) == 2 * (1 + 4) * 2

    with (
        running_exporter(path, "--shard=0/2") as first,
        running_exporter(path, "--shard=1/2") as second,
    ):
        replicas = (first, second)
        owned = [
            Counter(target_identity(t) for t in build_targets(config, Shard(index, 2)))
            for index in range(2)
        ]
        assert all(owned), "a replica owns no target: the live test would prove nothing"
        for exporter in replicas:
            wait_for(exporter.ready, timeout=30, what="replica ready (first round polled)")
            # /metrics is re-rendered at most once a second after polls land, so it
            # can trail /-/ready briefly: wait for every published target to be up.
            wait_for(partial(all_up, exporter), timeout=10, what="every target up")
        published = [published_targets(exporter) for exporter in replicas]

        for index, exporter in enumerate(replicas):
            assert published[index] == owned[index]
            series = parse_exposition(exporter.scrape())
            assert select(series, "nayax_ev_targets") == {
                ("nayax_ev_targets", frozenset()): float(len(owned[index]))
            }
            assert select(series, "nayax_ev_shard_info") == {
                ("nayax_ev_shard_info", frozenset({("index", str(index)), ("count", "2")})): 1.0
            }
            landing = requests.get(f"{exporter.url}/", timeout=5)
            assert landing.status_code == 200
            assert f"shard {index}/2" in landing.text
            assert f"Targets ({len(owned[index])})" in landing.text

        assert published[0] + published[1] == everything
        assert not set(published[0]) & set(published[1])
