"""Machine status answers → readings, for every timestamp convention (canned payloads)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.discovery import KnownMachine
from exporter.machine_samples import machine_labels, status_samples
from exporter.machine_status import parse_status, parse_timestamp, zone_for
from exporter.reading import BadPayload

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


def test_nulls_give_no_samples() -> None:
    status = parse_status(NO_DEVICE, zone=UTC, now=NOW)
    assert status.last_keepalive is None and status.mqtt_connected == 0.0
    labels = machine_labels(1, "Acme", KnownMachine(7, None, "7"))
    assert [s.family for s in status_samples(labels, status)] == ["nayax_ev_machine_mqtt_connected"]


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
    with pytest.raises(BadPayload):
        parse_status([STATUS], zone=UTC, now=NOW)


def test_status_samples_carry_the_machine_labels() -> None:
    labels = machine_labels(2001, "Acme", KnownMachine(942488501, "EV-1", "Car park A1"))
    samples = status_samples(labels, parse_status(STATUS, zone=UTC, now=NOW))
    by_name = {s.family: s for s in samples}
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
