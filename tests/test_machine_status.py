"""Machine status answers → readings, for every timestamp convention (canned payloads)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import pytest

from exporter.kinds.machine_status import MachineStatus, parse_status, status_samples, zone_for
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.upstream import Dropped, read_timestamp
from exporter.targets import Machine
from tests.harness import machine_target

NOW = datetime(2026, 5, 14, 23, 0, 0, tzinfo=UTC).timestamp()
KEEPALIVE_UTC = datetime(2026, 5, 14, 22, 17, 2, 877000, tzinfo=UTC).timestamp()

STATUS = {
    "MachineID": 942488501,
    "LastKeepAliveDateTime": "2026-05-14T22:17:02.877",
    "MachineMQTTStatus": True,
    "LastTransactionDateTime": "2026-05-14T21:00:00",
    "LastPowerUpDateTime": "2026-05-01T08:00:00.5",
    "LastPowerDownDateTime": None,
    "LastGPRSFailureCount": 2,
    "LastReceptionLevel(RSSI)": -71,
    "DeviceLastIPAddress": "10.0.0.1",
}
NO_DEVICE = {k: None for k in STATUS} | {"MachineID": 7, "MachineMQTTStatus": False}


def test_utc_convention_with_and_without_fractions() -> None:
    status = parse_status(STATUS, zone=zone_for("utc", None), now=NOW)
    assert status.last_keepalive == pytest.approx(KEEPALIVE_UTC, abs=1e-6)
    assert status.last_transaction == datetime(2026, 5, 14, 21, tzinfo=UTC).timestamp()
    assert status.last_power_up == datetime(2026, 5, 1, 8, 0, 0, 500000, tzinfo=UTC).timestamp()
    assert status.last_power_down is None
    assert (status.mqtt_connected, status.gprs_failures, status.signal_rssi) == (1.0, 2.0, -71.0)
    assert status.skewed == () and status.problems == ()


@pytest.mark.parametrize(
    ("convention", "offset", "hours_ahead"),
    [("machine", 3.0, 3.0), ("machine", -5.5, -5.5), ("machine", None, 0.0)],
)
def test_machine_convention_uses_the_offset(
    convention: str, offset: float | None, hours_ahead: float
) -> None:
    status = parse_status(STATUS, zone=zone_for(convention, offset), now=NOW + 86400)
    assert status.last_keepalive == pytest.approx(KEEPALIVE_UTC - hours_ahead * 3600, abs=1e-6)


def parse_timestamp(text: str, zone: tzinfo) -> float | None:
    epoch = read_timestamp(text, zone, NOW)
    assert epoch is None or isinstance(epoch, float)
    return epoch


def test_iana_zone_honours_daylight_saving() -> None:
    berlin = zone_for("Europe/Berlin", None)
    summer = parse_timestamp("2026-05-14T22:17:02.877", berlin)  # CEST = UTC+2
    winter = parse_timestamp("2026-01-14T22:17:02", berlin)  # CET = UTC+1
    assert summer == pytest.approx(KEEPALIVE_UTC - 7200, abs=1e-6)
    assert winter == datetime(2026, 1, 14, 21, 17, 2, tzinfo=UTC).timestamp()


def test_explicit_zone_in_the_answer_wins() -> None:
    zone = zone_for("Europe/Berlin", None)
    assert parse_timestamp("2026-05-14T22:17:02.877Z", zone) == pytest.approx(KEEPALIVE_UTC)
    assert parse_timestamp("2026-05-14T22:17:02.8770000", UTC) == pytest.approx(KEEPALIVE_UTC)


def test_future_timestamps_are_published_and_flagged() -> None:
    early = KEEPALIVE_UTC - 400  # our clock: the keep-alive looks 400 s ahead
    status = parse_status(STATUS, zone=UTC, now=early)
    assert status.last_keepalive == pytest.approx(KEEPALIVE_UTC)
    assert status.skewed == ("LastKeepAliveDateTime",)
    assert parse_status(STATUS, zone=UTC, now=KEEPALIVE_UTC - 200).skewed == ()


@pytest.mark.parametrize("convention", ["utc", "Europe/Berlin", "machine"])
def test_year_one_is_absent_and_counted_never_a_huge_negative_epoch(convention: str) -> None:
    doc = STATUS | {"LastKeepAliveDateTime": "0001-01-01T00:00:00", "LastPowerUpDateTime": "x"}
    status = parse_status(doc, zone=zone_for(convention, 2.0), now=NOW)
    assert status.last_keepalive is None
    assert status.dropped == (Dropped("LastKeepAliveDateTime", "timestamp_out_of_range"),)
    assert [p.field for p in status.problems] == ["LastPowerUpDateTime"]  # garbage stays a problem
    year_one_z = parse_status(
        STATUS | {"LastKeepAliveDateTime": "0001-01-01T00:00:00+01:00"}, zone=UTC, now=NOW
    )
    assert year_one_z.last_keepalive is None and year_one_z.problems + year_one_z.dropped


def test_timestamps_days_ahead_are_absent_but_hours_ahead_are_flagged() -> None:
    doc = STATUS | {"LastKeepAliveDateTime": "2026-05-16T23:00:00"}  # two days ahead
    doc |= {"LastTransactionDateTime": "2026-05-15T09:00:00"}  # ten hours ahead
    status = parse_status(doc, zone=UTC, now=NOW)
    assert status.last_keepalive is None
    assert status.last_transaction == datetime(2026, 5, 15, 9, tzinfo=UTC).timestamp()
    assert status.skewed == ("LastTransactionDateTime",)
    assert [d.field for d in status.dropped] == ["LastKeepAliveDateTime"]


def test_huge_integers_are_a_typed_problem() -> None:
    doc = STATUS | {"LastGPRSFailureCount": 10**400, "LastReceptionLevel(RSSI)": "1_0"}
    status = parse_status(doc, zone=UTC, now=NOW)
    assert status.gprs_failures is None and status.signal_rssi is None
    assert {p.field for p in status.problems} == {
        "LastGPRSFailureCount",
        "LastReceptionLevel(RSSI)",
    }


def test_nulls_give_no_samples() -> None:
    status = parse_status(NO_DEVICE, zone=UTC, now=NOW)
    assert status.last_keepalive is None and status.mqtt_connected == 0.0
    target = machine_target(Machine(7, None, "7"), actor_id=1)
    families = [s.family.name for s in status_samples(target, status)]
    assert families == ["nayax_ev_machine_mqtt_connected"]


def test_garbage_fields_are_problems_not_samples() -> None:
    doc = STATUS | {"LastKeepAliveDateTime": "yesterday", "LastGPRSFailureCount": "x"}
    doc |= {"MachineMQTTStatus": "yes", "LastTransactionDateTime": 5}
    status = parse_status(doc, zone=UTC, now=NOW)
    assert status.last_keepalive is None and status.gprs_failures is None
    assert status.mqtt_connected is None and status.last_transaction is None
    assert {p.field for p in status.problems} == {
        "LastKeepAliveDateTime",
        "LastGPRSFailureCount",
        "MachineMQTTStatus",
        "LastTransactionDateTime",
    }
    with pytest.raises(BadPayloadError):
        parse_status([STATUS], zone=UTC, now=NOW)


def test_status_samples_carry_the_machine_labels() -> None:
    target = machine_target(Machine(942488501, "EV-1", "Car park A1"))
    samples = status_samples(target, parse_status(STATUS, zone=UTC, now=NOW))
    by_name = {s.family.name: s for s in samples}
    keepalive = by_name["nayax_ev_machine_last_keepalive_timestamp_seconds"]
    assert dict(keepalive.labels) == {
        "actor_id": "2001",
        "actor": "Acme",
        "machine_id": "942488501",
        "machine_number": "EV-1",
        "machine": "Car park A1",
    }
    assert keepalive.value == pytest.approx(KEEPALIVE_UTC)
    assert "nayax_ev_machine_last_power_down_timestamp_seconds" not in by_name
    assert by_name["nayax_ev_machine_signal_rssi"].value == -71.0


def test_clock_skew_is_a_notice_counted_each_poll_and_logged_when_it_appears() -> None:
    import io

    from exporter.config import parse_config
    from exporter.logs import SecretScrubber, configure
    from exporter.polling.polls import count_outcome, log_notices
    from exporter.polling.store import PollOutcome, SnapshotStore
    from exporter.targets import MACHINE_STATUS, build_targets

    config = parse_config(
        "lynx: {token: t}\nactors: [{id: 1, machines: [{id: 5}, {id: 6}]}]\n", environ={}
    )
    targets = [t for t in build_targets(config) if t.kind == MACHINE_STATUS]
    store = SnapshotStore(targets)
    stream = io.StringIO()
    log = configure("info", "json", SecretScrubber(), stream)
    skewed = parse_status(STATUS, zone=UTC, now=KEEPALIVE_UTC - 400)
    fine = parse_status(STATUS, zone=UTC, now=KEEPALIVE_UTC)
    counted: list[str] = []

    class Counters:
        def count_poll_error(self, actor_id: int, reason: str) -> None:
            counted.append(reason)

        def count_dropped(self, kind: str, dropped: object) -> None:
            pass

    def commit(reading: MachineStatus) -> None:
        for transition in store.swap(
            [PollOutcome(t.key, NOW, reading) for t in targets]
        ).transitions:
            count_outcome(Counters(), transition)  # type: ignore[arg-type]
            log_notices(log, transition)

    def warnings() -> int:
        return stream.getvalue().count("lie in the future")

    commit(skewed)
    commit(skewed)
    assert (warnings(), counted) == (2, ["clock_skew"] * 4)  # logged once per machine
    assert all(state.up for state in store.current().states.values())  # a notice: up
    commit(fine)
    commit(skewed)
    assert warnings() == 4  # it came back: said again
