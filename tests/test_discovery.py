"""Discovery: machine pages, paging until an empty page, the merge rules (canned payloads)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from exporter.config import EV_MACHINE_TYPES, MachineConfig, Secret, parse_config
from exporter.config.machines import parse_discover_flag, parse_discovery, parse_machine_status
from exporter.kinds.discovery import (
    MAX_RECORDS,
    Discovery,
    DiscoveryKind,
    PageResult,
    fetch_pages,
    next_offset,
    parse_machine_page,
    settle_listing,
)
from exporter.lynx.client import Answer
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.upstream import Dropped
from exporter.metrics.families import info_sample
from exporter.targets import DISCOVERY, MachineInfo, build_targets, merge_machines
from tests.harness import machine_target

PAGE = [
    {
        "MachineID": 942488501,
        "MachineName": "Harbour Depot charger 1",
        "MachineNumber": "EV-000-0000",
        "ActorID": 2001,
        "MachineTypeID": 555007,
        "GeoCity": "Hamburg",
        "GeoLatitude": 53.5461,
        "GeoLongitude": 9.9661,
        "MachineTimeZoneOffset": 1.0,
    },
    {
        "MachineID": 942488502,
        "MachineName": None,
        "MachineNumber": "EV-2",
        "MachineTypeID": 30000526,
    },
    {"MachineID": 942488503, "MachineName": "Kiosk", "MachineTypeID": 1, "GeoLatitude": 500},
    {"MachineID": None, "MachineName": "broken"},
    "not an object",
]


def machine(machine_id: int, machine_type: int = 555007, name: str | None = None) -> MachineInfo:
    return MachineInfo(machine_id=machine_id, name=name, machine_type=machine_type)


def records_of(payload: object) -> tuple[MachineInfo, ...]:
    return parse_machine_page(payload)[0]


def test_page_parsing() -> None:
    records, dropped = parse_machine_page(PAGE)
    assert [r.machine_id for r in records] == [942488501, 942488502, 942488503]
    first = records[0]
    assert (first.name, first.number, first.city) == (
        "Harbour Depot charger 1",
        "EV-000-0000",
        "Hamburg",
    )
    assert (first.latitude, first.longitude, first.tz_offset_hours) == (53.5461, 9.9661, 1.0)
    assert records[2].latitude is None  # out of range: no made-up place
    assert dropped == (
        Dropped("GeoLatitude", "out_of_range"),
        Dropped("MachineID", "no_id", record=True),
        Dropped("MachineInfo", "not_an_object", record=True),
    )
    with pytest.raises(BadPayloadError):
        parse_machine_page({"value": PAGE})


def test_paging_continues_after_a_short_page_and_stops_at_an_empty_one() -> None:
    assert next_offset(0, [1, 2, 3], 1) == 3  # short (cap 3 < limit 1000): not the end
    assert next_offset(3, [4], 2) == 4
    assert next_offset(4, [], 3) is None
    assert next_offset(0, [1], 1000) is None  # safety stop


def test_complete_listing_replaces_and_filters_kinds() -> None:
    pages = [
        PageResult(0, (machine(1), machine(2, 1))),
        PageResult(2, (machine(3),)),
        PageResult(3, ()),
    ]
    kept, complete = settle_listing(None, pages, EV_MACHINE_TYPES)
    assert complete and [m.machine_id for m in kept or ()] == [1, 3]
    every, _ = settle_listing(None, pages, ())
    assert [m.machine_id for m in every or ()] == [1, 2, 3]


def test_failed_or_partial_listing_keeps_the_last_good_list() -> None:
    previous = (machine(1), machine(9))
    failed = [PageResult(0, (machine(1),)), PageResult(1, None)]
    assert settle_listing(previous, failed, ()) == (previous, False)
    unfinished = [PageResult(0, (machine(1),))]  # no empty page yet
    assert settle_listing(previous, unfinished, ()) == (previous, False)
    assert settle_listing(None, [PageResult(0, None)], ()) == (None, False)
    gone, complete = settle_listing(previous, [PageResult(0, (machine(1),)), PageResult(1, ())], ())
    assert complete and [m.machine_id for m in gone or ()] == [1]  # 9 disappears now


def test_duplicates_across_pages_count_once() -> None:
    pages = [
        PageResult(0, (machine(1), machine(2))),
        PageResult(2, (machine(2),)),
        PageResult(3, ()),
    ]
    kept, _ = settle_listing(None, pages, ())
    assert [m.machine_id for m in kept or ()] == [1, 2]


def test_merge_names_and_extra_configured_machines() -> None:
    discovered = records_of(PAGE)
    configured = (
        MachineConfig(id=942488501, name="Car park A1"),
        MachineConfig(number="EV-2", name="Door"),
        MachineConfig(id=5, name="Typed by hand"),
        MachineConfig(number="N-7"),
    )
    merged = merge_machines(configured, discovered)
    assert [(m.machine_id, m.label) for m in merged] == [
        (942488501, "Car park A1"),  # configured name overrides MachineName
        (942488502, "Door"),  # matched by number
        (942488503, "Kiosk"),  # MachineName
        (5, "Typed by hand"),  # configured, not listed: added
        (None, "N-7"),  # configured by number only
    ]
    assert merged[0].info is not None and merged[3].info is None
    bare = merge_machines((), (MachineInfo(machine_id=8, number="X"),))
    assert bare[0].label == "8"  # no name: the id
    assert merge_machines((), None) == ()


def test_repeated_names_stay_apart() -> None:
    merged = merge_machines(
        (), (machine(1, name="Bay"), machine(2, name="Bay"), machine(3, name="Gate"))
    )
    assert [m.label for m in merged] == ["Bay (1)", "Bay (2)", "Gate"]


def test_info_and_discovered_samples() -> None:
    merged = merge_machines((MachineConfig(id=942488501, name="Car park A1"),), records_of(PAGE))
    info = dict(info_sample(machine_target(merged[0])).labels)
    assert info == {
        "actor_id": "2001",
        "actor": "Acme",
        "machine_id": "942488501",
        "machine_number": "EV-000-0000",
        "machine": "Car park A1",
        "machine_type": "555007",
        "city": "Hamburg",
        "latitude": "53.5461",
        "longitude": "9.9661",
    }
    listing = Discovery(tuple(records_of(PAGE)))
    (count,) = DiscoveryKind().samples(machine_target(merged[0], kind=DISCOVERY), listing)
    assert (count.family.name, dict(count.labels), count.value) == (
        "nayax_ev_discovered_machines",
        {"actor_id": "2001", "actor": "Acme"},
        3.0,
    )


def test_config_sections() -> None:
    errors: list[str] = []
    discovery = parse_discovery({"interval": "30m", "machine_types": []}, errors)
    assert (discovery.interval, discovery.machine_types, errors) == (1800.0, (), [])
    assert parse_discovery(None, errors).machine_types == EV_MACHINE_TYPES
    status = parse_machine_status(
        {"enabled": False, "interval": "1m", "timestamps": "Europe/Berlin"}, errors
    )
    assert (status.enabled, status.interval, status.timestamps, errors) == (
        False,
        60.0,
        "Europe/Berlin",
        [],
    )
    assert parse_machine_status(None, errors).enabled is None
    parse_discovery({"interval": "0s", "machine_types": ["x"], "typo": 1}, errors)
    parse_machine_status({"timestamps": "Mars/Olympus", "enabled": "yes"}, errors)
    assert parse_discover_flag("true", "actors[0].discover", errors) is False
    assert sorted(e.split(":")[0] for e in errors) == [
        "actors[0].discover",
        "discovery.interval",
        "discovery.machine_types[0]",
        "discovery.typo",
        "machine_status.enabled",
        "machine_status.timestamps",
    ]


def test_config_file_keys() -> None:
    from exporter.config import ConfigError, parse_config

    text = """
lynx: {token: t}
discovery: {interval: 30m, machine_types: []}
machine_status: {interval: 1m, timestamps: machine}
actors:
  - {id: 1, discover: true}
  - {id: 2}
"""
    config = parse_config(text)
    assert config.actors[0].discover and not config.actors[1].discover
    assert config.discovery.machine_types == () and config.machine_status.timestamps == "machine"
    assert config.status_enabled  # a discovering actor turns status on by default
    assert not parse_config("lynx: {token: t}\nactors: [{id: 1}]").status_enabled
    off = "lynx: {token: t}\nmachine_status: {enabled: false}\nactors: [{id: 1, discover: true}]"
    assert not parse_config(off).status_enabled
    with pytest.raises(ConfigError) as raised:
        parse_config("lynx: {token: t}\nactors: [{id: 1, discover: 1}]\ndiscovery: {interval: x}")
    assert {e.split(":")[0] for e in raised.value.errors} == {
        "actors[0].discover",
        "discovery.interval",
    }


class FakeListing:
    """An API that answers page ``n`` of ``pages`` (the last one for ever after)."""

    def __init__(self, pages: list[list[dict[str, object]]]) -> None:
        self.pages = pages
        self.asked: list[dict[str, str]] = []

    def get_json(self, path: str, params: Mapping[str, str], credential: Secret) -> Answer:
        self.asked.append(dict(params))
        return Answer(self.pages[min(len(self.asked), len(self.pages)) - 1], 200, 1, 0.01)


def test_fetch_pages_stops_at_an_empty_page_a_repeated_page_or_too_many() -> None:
    config = parse_config("lynx: {token: t}\nactors: [{id: 9, discover: true}]")
    target = build_targets(config)[-1]
    record: dict[str, object] = {"MachineID": 1, "MachineTypeID": 555007}
    api = FakeListing([[record, {**record, "MachineID": 2}], [{**record, "MachineID": 3}], []])
    answer = fetch_pages(api.get_json, "/v1/machines", {"ActorID": "9"}, Secret("t"))
    assert [a["ResultsOffset"] for a in api.asked] == ["0", "2", "3"]  # short is not the end
    assert {a["ResultsLimit"] for a in api.asked} == {"1000"} and answer.attempts == 3
    found = DiscoveryKind().parse(answer.payload, target, config, 0.0).machines
    assert [m.machine_id for m in found] == [1, 2, 3]

    stuck = FakeListing([[record]])  # ignores ResultsOffset: the same page for ever
    answer = fetch_pages(stuck.get_json, "/v1/machines", {}, Secret("t"))
    assert len(stuck.asked) == 2
    with pytest.raises(BadPayloadError):
        DiscoveryKind().parse(answer.payload, target, config, 0.0)

    def page(n: int) -> list[dict[str, object]]:
        return [{**record, "MachineID": n * 1000 + i + 1} for i in range(1000)]

    endless = FakeListing([page(n) for n in range(MAX_RECORDS // 1000 + 5)])
    answer = fetch_pages(endless.get_json, "/v1/machines", {}, Secret("t"))
    assert len(endless.asked) == MAX_RECORDS // 1000 + 1
    with pytest.raises(BadPayloadError):
        DiscoveryKind().parse(answer.payload, target, config, 0.0)
