"""The uptime report against a real Prometheus holding a year of history.

A year of keep-alive series for four chargers (known outages, Prometheus gaps, a
rename, a charger scraped twice, a frozen exporter, a decommissioned charger) is
written as OpenMetrics, backfilled with ``promtool tsdb create-blocks-from
openmetrics``, and served by Debian's ``/usr/bin/prometheus`` behind basic auth
and mutual TLS (its own ``--web.config.file``). ``python -m exporter report uptime`` then runs as
a subprocess, and every row (12 months and the trailing twelve, per charger) must
equal the minutes counted by hand in ``tests/uptime_history.py``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool
from tests.harness import REPO
from tests.prometheus_server import running_prometheus
from tests.test_web_security import PKI, bcrypt_hash, make_pki
from tests.uptime_history import (
    Expected,
    History,
    Interval,
    Scrape,
    at,
    count_minutes,
    openmetrics,
)

pytestmark = pytest.mark.e2e

USER, PASSWORD = "report", "s3cret report pass"
MONTH = "2024-06"  # the twelve months 2023-07 .. 2024-06 hold 29 February 2024
MONTHS = [f"{2023 + (6 + i) // 12}-{(6 + i) % 12 + 1:02d}" for i in range(12)]
SPAN = (at("2023-07-01T00:00:00"), at("2024-07-01T00:00:00"))
DATA_END = at("2024-07-01T00:10:00")


def labels(
    actor_id: str, machine_id: str, machine: str, **extra: str
) -> tuple[tuple[str, str], ...]:
    return (
        ("actor_id", actor_id),
        ("machine_id", machine_id),
        ("machine", machine),
        *extra.items(),
    )


def span(start: str, end: str) -> Interval:
    return at(start), at(end)


HISTORIES = (
    History(  # scraped since before the span; outages, one across January/February, one on 29 Feb
        "1001",
        "5001",
        (
            Scrape(
                labels("1001", "5001", "Depot North 1"), 20, (at("2023-06-30T23:00:00"), DATA_END)
            ),
        ),
        down=(
            span("2023-08-15T10:00:00", "2023-08-15T13:30:00"),
            span("2024-01-31T22:00:00", "2024-02-01T03:00:00"),
            span("2024-02-29T12:00:00", "2024-02-29T14:00:00"),
        ),
    ),
    History(  # renamed on 10 March; Prometheus gaps (one across November/December)
        "1001",
        "5002",
        (
            Scrape(
                labels("1001", "5002", "Depot North 2"), 20, (SPAN[0], at("2024-03-10T12:00:00"))
            ),
            Scrape(
                labels("1001", "5002", "Depot North, bay 2"),
                20,
                (at("2024-03-10T12:00:00"), DATA_END),
            ),
        ),
        down=(
            span("2023-10-04T10:00:00", "2023-10-04T20:00:00"),  # inside a gap: unknown, not outage
            span("2024-03-10T11:00:00", "2024-03-10T13:00:00"),  # across the rename
        ),
        gaps=(
            span("2023-10-03T00:00:00", "2023-10-05T00:00:00"),
            span("2023-11-30T20:00:00", "2023-12-01T04:00:00"),
        ),
    ),
    History(  # commissioned in September; in April scraped twice, one scrape with a gap
        "2002",
        "7003",
        (
            Scrape(
                labels("2002", "7003", "Mall 3", instance="a"),
                20,
                (at("2023-09-20T08:00:00"), DATA_END),
                gaps=(span("2024-04-10T00:00:00", "2024-04-10T06:00:00"),),
            ),
            Scrape(
                labels("2002", "7003", "Mall 3", instance="b"),
                50,
                (at("2024-04-01T00:00:00"), at("2024-05-01T00:00:00")),
            ),
        ),
        down=(span("2024-04-20T00:00:00", "2024-04-20T05:00:00"),),
        commissioned=at("2023-09-20T08:00:00"),
    ),
    History(  # the exporter cannot poll for 4 h (the value freezes); decommissioned 20 June
        "2002",
        "7004",
        (Scrape(labels("2002", "7004", "Mall 4"), 20, (SPAN[0], at("2024-06-20T15:30:00"))),),
        down=(span("2023-12-24T18:00:00", "2023-12-26T09:00:00"),),
        exporter_blind=(span("2024-05-10T08:00:00", "2024-05-10T12:00:00"),),
    ),
)
NAMES = {"5001": "Depot North 1", "5002": "Depot North, bay 2", "7003": "Mall 3", "7004": "Mall 4"}

EXCLUDED: list[dict[str, object]] = [
    {"start": "2023-08-15T12:00:00Z", "end": "2023-08-15T16:00:00Z", "reason": "grid outage"},
    {
        "start": "2023-08-15T11:00:00Z",  # overlaps the fleet-wide window: counted once
        "end": "2023-08-15T12:30:00Z",
        "reason": "maintenance",
        "actor_id": 1001,
        "machine_id": 5001,
    },
    {
        "start": "2024-01-31T23:30:30Z",  # not on a minute; across January/February
        "end": "2024-02-01T01:00:00+00:00",
        "reason": "utility works",
        "actor_id": 1001,
        "machine_id": 5001,
    },
    {
        "start": "2023-11-30T00:00:00Z",  # across November/December, over a gap
        "end": "2023-12-01T02:00:00Z",
        "reason": "site closed",
        "actor_id": 1001,
        "machine_id": 5002,
    },
    {
        "start": "2024-05-10T09:00:00+02:00",  # 07:00Z-08:30Z, an actor-wide window
        "end": "2024-05-10T10:30:00+02:00",
        "reason": "network maintenance",
        "actor_id": 2002,
    },
    {
        "start": "2024-06-25T00:00:00Z",  # after decommissioning: unknown minutes
        "end": "2024-06-26T00:00:00Z",
        "reason": "decommissioned",
        "actor_id": 2002,
        "machine_id": 7004,
    },
]


def windows_for(history: History) -> list[Interval]:
    """The excluded windows that apply to ``history``, as the test reads the file."""
    found = []
    for window in EXCLUDED:
        if window.get("actor_id") not in (None, int(history.actor_id)):
            continue
        if window.get("machine_id") not in (None, int(history.machine_id)):
            continue
        found.append((_epoch(window["start"]), _epoch(window["end"])))
    return found


def _epoch(text: object) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(str(text)).timestamp())


def month_bounds(label: str) -> Interval:
    year, month = map(int, label.split("-"))
    following = f"{year + month // 12}-{month % 12 + 1:02d}"
    return at(f"{label}-01T00:00:00"), at(f"{following}-01T00:00:00")


@pytest.fixture(scope="module")
def expected() -> dict[tuple[str, str, str], Expected]:
    """(actor_id, machine_id, month) → the minutes counted by hand; month
    ``2023-07/2024-06`` for the trailing twelve."""
    table: dict[tuple[str, str, str], Expected] = {}
    for history in HISTORIES:
        windows = windows_for(history)
        months = count_minutes(history, [month_bounds(m) for m in MONTHS], windows)
        for label, counted in zip(MONTHS, months, strict=True):
            table[(history.actor_id, history.machine_id, label)] = counted
        table[(history.actor_id, history.machine_id, "2023-07/2024-06")] = sum(
            months[1:], months[0]
        )
    return table


def test_the_history_has_the_cases_it_claims(
    expected: dict[tuple[str, str, str], Expected],
) -> None:
    """Guards the generated data: without these the comparison would prove less."""
    year = {key[:2]: value for key, value in expected.items() if "/" in key[2]}
    assert all(e.total == 527_040 for e in year.values())  # a leap span
    assert expected[("1001", "5001", "2024-02")].outage > 0
    assert expected[("1001", "5001", "2024-01")].excluded > 0  # the window across months
    assert expected[("1001", "5001", "2024-02")].excluded > 0
    assert expected[("1001", "5002", "2023-10")].unknown >= 2 * 1440 - 10  # the 2-day gap
    assert expected[("1001", "5002", "2023-11")].excluded_unknown > 0
    assert expected[("2002", "7003", "2023-07")].observed == 0  # not yet commissioned
    assert expected[("2002", "7003", "2024-04")].unknown == 0  # the 2nd scrape fills the gap
    assert expected[("2002", "7004", "2024-05")].excluded > 0  # the frozen exporter, excluded
    assert expected[("2002", "7004", "2024-06")].excluded_unknown == 1440


@dataclass
class Backfilled:
    url: str
    directory: Path
    pki: PKI


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    prometheus_bin = require_tool("prometheus")
    require_tool("promtool")
    directory = tmp_path_factory.mktemp("uptime")
    source = directory / "history.om"
    with source.open("w", encoding="utf-8") as handle:
        handle.writelines(openmetrics(HISTORIES))
    tsdb = directory / "tsdb"
    created = subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            # One block per ~6 months: promtool 2.x re-reads the whole file per block,
            # so its 2 h default would read it 4,000 times.
            "--max-block-duration=8760h",
            str(source),
            str(tsdb),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    source.unlink()  # 250 MB
    pki = make_pki(directory / "pki")
    web = directory / "web.yml"
    tls = {
        "cert_file": str(pki.server.cert),
        "key_file": str(pki.server.key),
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": str(pki.ca),
    }
    users = {USER: bcrypt_hash(PASSWORD)}
    web.write_text(yaml.safe_dump({"tls_server_config": tls, "basic_auth_users": users}))
    config = directory / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    with running_prometheus(
        prometheus_bin,
        [
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=2y",  # older blocks would be dropped at start
            f"--web.config.file={web}",
        ],
        directory / "prometheus.log",
        scheme="https",
        timeout=60,
        auth=(USER, PASSWORD),
        verify=str(pki.ca),
        cert=pki.client.pair,
    ) as running:
        yield Backfilled(running.url, directory, pki)


def report(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", "uptime", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def http_config(
    prometheus: Backfilled,
    password: str | None = PASSWORD,
    *,
    as_file: bool = False,
    ca: bool = True,
) -> Path:
    """A ``--http.config.file``: basic auth (or none), the client certificate, the CA."""
    directory = prometheus.directory
    document: dict[str, object] = {
        "tls_config": {
            "cert_file": str(prometheus.pki.client.cert),
            "key_file": str(prometheus.pki.client.key),
            **({"ca_file": str(prometheus.pki.ca)} if ca else {}),
        }
    }
    if password is not None and as_file:
        secret = directory / "password"
        secret.write_text(password + "\n")
        document["basic_auth"] = {"username": USER, "password_file": secret.name}  # relative
    elif password is not None:
        document["basic_auth"] = {"username": USER, "password": password}
    path = directory / f"http-{len(list(directory.glob('http-*.yml')))}.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def excluded_file(directory: Path) -> Path:
    path = directory / "excluded.yml"
    path.write_text(yaml.safe_dump({"excluded": EXCLUDED}, sort_keys=False))
    return path


def expected_rows(
    expected: dict[tuple[str, str, str], Expected], *, unknown_as_outage: bool = True
) -> list[dict[str, str]]:
    rows = []
    for history in HISTORIES:
        for month in [*MONTHS, "2023-07/2024-06"]:
            counted = expected[(history.actor_id, history.machine_id, month)]
            rows.append(
                {
                    "actor_id": history.actor_id,
                    "machine_id": history.machine_id,
                    "machine": NAMES[history.machine_id],
                    "month": month,
                    "observed_minutes": str(counted.observed),
                    "unknown_minutes": str(counted.unknown),
                    "outage_minutes": str(counted.outage),
                    "excluded_minutes": str(counted.excluded),
                    "uptime_percent": counted.uptime(unknown_as_outage),
                }
            )
    return rows


def test_every_csv_row_equals_the_minutes_counted_by_hand(
    prometheus: Backfilled, expected: dict[tuple[str, str, str], Expected]
) -> None:
    output = prometheus.directory / "uptime.csv"
    result = report(
        f"--prometheus.url={prometheus.url}",
        f"--http.config.file={http_config(prometheus)}",
        f"--month={MONTH}",
        f"--excluded={excluded_file(prometheus.directory)}",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""  # no progress bar without a terminal, no warning
    text = output.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    wanted = expected_rows(expected)
    assert len(rows) == 4 * 13
    for got, want in zip(rows, wanted, strict=True):
        assert got == want, (got["machine_id"], got["month"])


def test_json_with_unknown_minutes_left_out_and_a_password_file(
    prometheus: Backfilled, expected: dict[tuple[str, str, str], Expected]
) -> None:
    result = report(
        f"--prometheus.url={prometheus.url}/",
        f"--http.config.file={http_config(prometheus, as_file=True)}",
        f"--month={MONTH}",
        f"--excluded={excluded_file(prometheus.directory)}",
        "--format=json",
        "--unknown=exclude",
        "--query.concurrency=1",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["parameters"] == {
        "first_month": "2023-07",
        "last_month": "2024-06",
        "threshold_seconds": 900,
        "unknown_minutes": "exclude",
        "excluded_windows": len(EXCLUDED),
    }
    wanted = expected_rows(expected, unknown_as_outage=False)
    assert len(document["rows"]) == len(wanted)
    for got, want in zip(document["rows"], wanted, strict=True):
        uptime = want["uptime_percent"]
        assert got["uptime_percent"] == (float(uptime) if uptime else None)
        assert {k: str(v) for k, v in got.items() if k != "uptime_percent"} == {
            k: v for k, v in want.items() if k != "uptime_percent"
        }
    # The charger not yet commissioned in July has no minute to count under "exclude".
    july = next(r for r in document["rows"] if r["machine_id"] == "7003")
    assert july["month"] == "2023-07" and july["uptime_percent"] is None


def test_without_credentials_prometheus_refuses_and_the_exit_code_is_1(
    prometheus: Backfilled,
) -> None:
    config = http_config(prometheus, None)
    result = report(
        f"--prometheus.url={prometheus.url}", f"--http.config.file={config}", f"--month={MONTH}"
    )
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "--http.config.file" in result.stderr
    assert result.stdout == ""


def test_a_wrong_password_is_refused_and_never_printed(prometheus: Backfilled) -> None:
    wrong = "wrong-password-1234"
    config = http_config(prometheus, wrong)
    result = report(
        f"--prometheus.url={prometheus.url}", f"--http.config.file={config}", f"--month={MONTH}"
    )
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert wrong not in result.stderr + result.stdout


def test_a_server_certificate_from_an_unknown_ca_is_refused(prometheus: Backfilled) -> None:
    config = http_config(prometheus, ca=False)  # the system's CAs do not know the test CA
    result = report(
        f"--prometheus.url={prometheus.url}", f"--http.config.file={config}", f"--month={MONTH}"
    )
    assert result.returncode == 1
    assert "TLS with" in result.stderr and "certificate verify failed" in result.stderr
    assert PASSWORD not in result.stderr


def test_the_progress_bar_shows_on_a_terminal_and_the_report_is_the_same(
    prometheus: Backfilled,
) -> None:
    """stderr on a pseudo-terminal: the bar is drawn there (and wiped at the end);
    stdout, a pipe, carries the very same CSV as without a terminal."""
    leader, follower = pty.openpty()
    args = [
        f"--prometheus.url={prometheus.url}",
        f"--http.config.file={http_config(prometheus)}",
        f"--month={MONTH}",
    ]
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "report", "uptime", *args],
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=REPO,
        )
        os.close(follower)
        drawn = _read_all(leader)
        stdout, _ = process.communicate(timeout=120)
    finally:
        os.close(leader)
    assert process.returncode == 0
    assert "queries" in drawn and "100%" in drawn and "\r" in drawn
    assert drawn.endswith("\r")  # the last line blanked: the prompt comes back clean
    plain = subprocess.run(
        [sys.executable, "-m", "exporter", "report", "uptime", *args],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert plain.returncode == 0 and plain.stderr == b""
    assert stdout == plain.stdout


def _read_all(descriptor: int, timeout: float = 120) -> str:
    """Everything written to the pty until the child closes it."""
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the report did not finish"
        if not select.select([descriptor], [], [], remaining)[0]:
            continue
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
