"""``nayax-ev-exporter report uptime`` from the outside: usage errors (exit 2), an
unreachable or failing Prometheus (exit 1), and the HTTP client's handling of
what a server may answer. The failing server is a small loopback stand-in: a
real Prometheus does not answer 502 or 100 MB on demand (the real one is in
tests/test_report_uptime_e2e.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from exporter.config.validate import Secret
from exporter.report import promapi
from exporter.report.command import main
from exporter.report.httpconfig import HTTPSettings
from exporter.report.promapi import PrometheusAPI, PrometheusError, base_url
from tests.harness import REPO, free_port

Answer = tuple[int, bytes]


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", "uptime", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


# --- usage: exit 2 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--prometheus.url"),
        (("--prometheus.url=http://p:9090", "--month=2024-13"), "YYYY-MM"),
        (("--prometheus.url=http://p:9090", "--month=2999-01"), "has not ended yet"),
        (("--prometheus.url=ftp://p", "--month=2024-01"), "http:// or https://"),
        (("--prometheus.url=http://p:9090", "--threshold=30s"), "--threshold"),
        (("--prometheus.url=http://p:9090", "--threshold=1.5m5"), "--threshold"),
        (("--prometheus.url=http://p:9090", "--format=xml"), "--format"),
        (("--prometheus.url=http://p:9090", "--query.max-points=10"), "--query.max-points"),
        (("--prometheus.url=http://p:9090", "--query.concurrency=0"), "--query.concurrency"),
        (("--prometheus.url=http://p:9090", "--output=/nonexistent/dir/x.csv"), "--output"),
        (("--prometheus.url=http://p:9090", "--output=/tmp"), "--output"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    result = report(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_a_password_in_the_url_is_refused_and_not_echoed() -> None:
    result = report("--prometheus.url=http://user:hunter2pw@p:9090", "--month=2024-01")
    assert result.returncode == 2
    assert "--http.config.file" in result.stderr and "hunter2pw" not in result.stderr


def test_an_invalid_excluded_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "excluded.yml"
    path.write_text("excluded:\n  - start: 2024-03-10T02:00:00\n    end: x\n")
    result = report("--prometheus.url=http://127.0.0.1:9", f"--excluded={path}", "--month=2024-01")
    assert result.returncode == 2
    assert "error: excluded[0].start: has no UTC offset" in result.stderr
    assert "error: excluded[0].reason: is required" in result.stderr


def test_an_invalid_http_config_exits_2_without_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "http.yml"
    path.write_text("basic_auth: {username: u, password: secret-pw}\nbearer_token: other-secret\n")
    result = report("--prometheus.url=http://127.0.0.1:9", f"--http.config.file={path}")
    assert result.returncode == 2
    assert "bearer_token: cannot be combined with basic_auth" in result.stderr
    assert "secret" not in result.stderr.replace("--http.config.file", "")


def test_the_report_command_is_reached_from_the_exporters_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "report", "uptime", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "--prometheus.url" in result.stdout and "--excluded" in result.stdout


# --- Prometheus unreachable or failing: exit 1 ----------------------------------------


def test_unreachable_prometheus_exits_1_with_the_cause() -> None:
    port = free_port()  # nothing listens there
    result = report(f"--prometheus.url=http://127.0.0.1:{port}", "--month=2024-01")
    assert result.returncode == 1
    assert f"cannot reach Prometheus at http://127.0.0.1:{port}" in result.stderr
    assert "Connection refused" in result.stderr
    assert result.stdout == ""


class StubPrometheus:
    """Answers each request with the next canned (status, body); records requests."""

    def __init__(
        self, answers: list[Answer] | Callable[[str, dict[str, list[str]]], Answer]
    ) -> None:
        self.answers = answers
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                stub.requests.append((self.path, form, self.headers.get("Authorization")))
                if callable(stub.answers):
                    status, body = stub.answers(self.path, form)
                else:
                    status, body = stub.answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubPrometheus:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def success(data: object) -> bytes:
    return json.dumps({"status": "success", "data": data}).encode()


def vector(*values: tuple[dict[str, str], float]) -> bytes:
    result = [{"metric": m, "value": [0, str(v)]} for m, v in values]
    return success({"resultType": "vector", "result": result})


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promapi, "RETRY_DELAYS", (0.0, 0.0))


def api(url: str, settings: HTTPSettings | None = None) -> PrometheusAPI:
    return PrometheusAPI(url, settings or HTTPSettings(), timeout=5)


def test_a_query_is_posted_with_its_time_and_timeout_and_the_credentials() -> None:
    header = Secret("Bearer tok-1")
    answer = vector(({"actor_id": "1", "machine_id": "2"}, 42))
    with StubPrometheus([(200, answer)]) as stub:
        samples = api(stub.url, HTTPSettings(authorization=header)).vector("up", 1700000000)
    assert [(dict(s.labels), s.value) for s in samples] == [
        ({"actor_id": "1", "machine_id": "2"}, 42.0)
    ]
    path, form, authorization = stub.requests[0]
    assert path == "/api/v1/query"
    assert form == {"query": ["up"], "time": ["1700000000"], "timeout": ["5s"]}
    assert authorization == "Bearer tok-1"


def test_502_503_504_and_resets_are_retried(no_retry_wait: None) -> None:
    answers = [(503, b"busy"), (502, b""), (200, vector())]
    with StubPrometheus(answers) as stub:
        assert api(stub.url).vector("up", 0) == []
    assert len(stub.requests) == 3
    with StubPrometheus([(504, b"")] * 3) as stub, pytest.raises(PrometheusError, match="HTTP 504"):
        api(stub.url).vector("up", 0)


def test_the_series_listing_is_not_retried(no_retry_wait: None) -> None:
    with StubPrometheus([(503, b"")]) as stub, pytest.raises(PrometheusError, match="HTTP 503"):
        api(stub.url).series("up", 0, 1)
    assert len(stub.requests) == 1


def test_prometheus_errors_are_shown_on_one_line_without_retrying() -> None:
    body = json.dumps(
        {"status": "error", "errorType": "bad_data", "error": "parse error:\nunexpected"}
    ).encode()
    with StubPrometheus([(400, body)]) as stub, pytest.raises(PrometheusError) as caught:
        api(stub.url).vector("up{", 0)
    assert (
        str(caught.value) == f"{stub.url}/api/v1/query: HTTP 400: bad_data: parse error: unexpected"
    )
    assert len(stub.requests) == 1


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (503, "timeout", "query timed out in expression evaluation"),
        (422, "execution", "query processing would load too many samples into memory"),
    ],
)
def test_a_query_too_heavy_fails_at_once_with_a_hint(
    no_retry_wait: None, status: int, kind: str, error: str
) -> None:
    body = json.dumps({"status": "error", "errorType": kind, "error": error}).encode()
    with StubPrometheus([(status, body)] * 3) as stub, pytest.raises(PrometheusError) as caught:
        api(stub.url).vector("up", 0)
    assert "--query.max-points" in str(caught.value)
    assert len(stub.requests) == 1  # the same query would only time out again


def test_401_says_where_the_credentials_go() -> None:
    with StubPrometheus([(401, b"Unauthorized")]) as stub, pytest.raises(PrometheusError) as caught:
        api(stub.url).vector("up", 0)
    assert "HTTP 401: not authorized; check the credentials in --http.config.file" in str(
        caught.value
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode(),
        json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [{}]}}
        ).encode(),
    ],
)
def test_unusable_answers_are_errors(body: bytes) -> None:
    with StubPrometheus([(200, body)]) as stub, pytest.raises(PrometheusError):
        api(stub.url).vector("up", 0)


def test_an_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promapi, "MAX_RESPONSE_BYTES", 1024)
    big = success([{"machine": "x" * 2000}])
    with StubPrometheus([(200, big)]) as stub, pytest.raises(PrometheusError, match="larger than"):
        api(stub.url).series("up", 0, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://prometheus:9090/", "http://prometheus:9090"),
        ("https://example.com/prometheus/", "https://example.com/prometheus"),
        (" http://[::1]:9090 ", "http://[::1]:9090"),
    ],
)
def test_the_prometheus_url_keeps_a_path_prefix(text: str, expected: str) -> None:
    assert base_url(text) == expected


@pytest.mark.parametrize("text", ["prometheus:9090", "http://", "http://h/?x=1", "http://u@h"])
def test_unusable_prometheus_urls(text: str) -> None:
    with pytest.raises(ValueError, match=r"--prometheus\.url"):
        base_url(text)


# --- a whole run against the stand-in ---------------------------------------------------


@pytest.fixture
def fleet_of_one() -> Iterator[StubPrometheus]:
    """One charger, communicating every minute of every month, no windows."""

    def answer(path: str, form: dict[str, list[str]]) -> Answer:
        labels = {"actor_id": "1", "machine_id": "2", "machine": "Bay 2"}
        if path == "/api/v1/series":
            return 200, success([{"__name__": "x", **labels}])
        query = form["query"][0]
        minutes = int(query.split("[")[1].split("s:")[0]) // 60
        return 200, vector((labels, minutes))

    with StubPrometheus(answer) as stub:
        yield stub


def test_a_run_writes_the_file_only_when_it_succeeds(
    tmp_path: Path, fleet_of_one: StubPrometheus
) -> None:
    output = tmp_path / "uptime.csv"
    result = report(f"--prometheus.url={fleet_of_one.url}", "--month=2024-06", f"--output={output}")
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()
    assert len(lines) == 14 and lines[-1] == "1,2,Bay 2,2023-07/2024-06,527040,0,0,0,100.0000"
    assert [p.name for p in tmp_path.iterdir()] == ["uptime.csv"]  # no temporary file left
    # 12 months x (known, communicating), after one series listing
    assert len(fleet_of_one.requests) == 25


def test_prometheus_warnings_reach_stderr_once(tmp_path: Path) -> None:
    """A partial answer (remote storage down) must not pass silently."""
    labels = {"actor_id": "1", "machine_id": "2"}

    def answer(path: str, form: dict[str, list[str]]) -> Answer:
        if path == "/api/v1/series":
            return 200, success([labels])
        body = json.loads(vector((labels, 0)))
        body["warnings"] = ["remote_read: store\nunavailable"]
        return 200, json.dumps(body).encode()

    with StubPrometheus(answer) as stub:
        result = report(f"--prometheus.url={stub.url}", "--month=2024-06")
    assert result.returncode == 0
    assert result.stderr == "warning: Prometheus: remote_read: store unavailable\n"


def test_a_failed_run_leaves_the_previous_report_in_place(tmp_path: Path) -> None:
    output = tmp_path / "uptime.csv"
    output.write_text("the previous report\n")
    result = report(f"--prometheus.url=http://127.0.0.1:{free_port()}", f"--output={output}")
    assert result.returncode == 1
    assert output.read_text() == "the previous report\n"


def test_the_default_month_is_the_last_complete_one(
    tmp_path: Path, fleet_of_one: StubPrometheus
) -> None:
    output = tmp_path / "uptime.csv"
    args = ["uptime", f"--prometheus.url={fleet_of_one.url}", f"--output={output}"]
    assert main(args, now=datetime(2024, 7, 1, 0, 0, 1, tzinfo=UTC)) == 0
    assert output.read_text().splitlines()[-1].split(",")[3] == "2023-07/2024-06"
    with pytest.raises(SystemExit) as caught:  # June has not ended at its last second
        main([*args, "--month=2024-06"], now=datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC))
    assert caught.value.code == 2
