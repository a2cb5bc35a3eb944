"""Shared test harness: real processes, real sockets.

``ExporterProcess`` runs ``python -m exporter`` as a child process against a
config file, captures its JSON log lines, and offers scrape helpers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Secret, WindowConfig
from exporter.lynx.client import Answer, LynxClient
from exporter.targets import MACHINE_STATUS, Machine, Target, TargetKey

REPO = Path(__file__).resolve().parent.parent

SeriesKey = tuple[str, frozenset[tuple[str, str]]]
T = TypeVar("T")
# The fields of a Lynx API error body (400/500) as the vendor's QA system sends them
# (shared/reference/lynx-ev-dashboard-api.md, "Error answers"); the simulator's too.
VENDOR_ERROR_FIELDS = frozenset(
    {"message", "errorKey", "errorCode", "errorMessage", "correlationId", "isUserError"}
)


def run_promtool(*args: str) -> str:
    """Run promtool in the repository root; its output, asserting success."""
    from tests.conftest import require_tool  # conftest is loaded by pytest first

    result = subprocess.run(
        [require_tool("promtool"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def machine_target(
    machine: Machine, *, actor_id: int = 2001, actor: str = "Acme", kind: str = MACHINE_STATUS
) -> Target:
    """A target of ``kind`` polling ``machine`` (for tests of a kind's samples)."""
    window = WindowConfig(name="status" if kind == MACHINE_STATUS else "24h", rolling=86400.0)
    return Target(
        key=TargetKey(actor_id, machine.ref, window.name, kind),
        actor_id=actor_id,
        actor=actor,
        currency="EUR",
        machine=machine,
        window=window,
        token=Secret("test-token-0123456789"),
    )


def fetch_dashboard(
    client: LynxClient, actor_id: int, params: Mapping[str, str], token: Secret
) -> Answer:
    """GET one actor's evDashboard through ``client`` (the ev_dashboard kind's path)."""
    return client.get_json(f"/v1/actors/{actor_id}/evDashboard", params, token)


def promtool_check_metrics(text: str) -> None:
    """``promtool check metrics`` on an exposition: it must pass with nothing to say."""
    from tests.conftest import require_tool

    checked = subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=text.encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    said = (checked.stdout + checked.stderr).decode("utf-8", "replace")
    assert checked.returncode == 0 and not said, said


def config_check(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``python -m exporter --config.check ARGS`` in the repository root, with only
    ``PATH`` (plus ``env``) in its environment: no variable of the machine running
    the tests reaches the config. A hang past ``timeout`` fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_exposition(text: str) -> dict[SeriesKey, float]:
    """Every sample as {(name, labels): value}."""
    series: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def select(series: Mapping[SeriesKey, float], name: str, **labels: str) -> dict[SeriesKey, float]:
    """The samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {k: v for k, v in series.items() if k[0] == name and wanted <= k[1]}


def wait_for(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_with_deadline(call: Callable[[], T], deadline: float, what: str) -> T:
    """``call()`` in a daemon thread: what it returns, or what it raised, raised
    here. Still running after ``deadline`` seconds fails the test (``what``
    blocked) instead of hanging the suite: for reads that must never block."""
    returned: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            returned.append(call())
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(deadline)
    assert not worker.is_alive(), f"{what} blocked"
    if raised:
        raise raised[0]
    return returned[0]


@dataclass
class ExporterProcess:
    """A running exporter child process."""

    args: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_lines: list[str] = field(default_factory=list)
    stdout: bytes = b""
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_healthy: bool = True) -> ExporterProcess:
        command = [
            sys.executable,
            "-m",
            "exporter",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.format=json",
            *self.args,
        ]
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if wait_healthy:
            wait_for(self.healthy, timeout=20, what="exporter /-/healthy")
        return self

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            self.log_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def logs(self) -> list[dict[str, Any]]:
        """Log lines parsed as JSON (every line must be JSON: a test for that)."""
        return [json.loads(line) for line in list(self.log_lines) if line.strip()]

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"exporter exited with {self.process.returncode}:\n" + "\n".join(self.log_lines)
            )
        try:
            return requests.get(f"{self.url}/-/healthy", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def scrape(self, timeout: float = 5.0) -> str:
        response = requests.get(f"{self.url}/metrics", timeout=timeout)
        response.raise_for_status()
        return response.text

    def series(self) -> dict[SeriesKey, float]:
        return parse_exposition(self.scrape())

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.stdout = self.process.stdout.read()
        if self._reader is not None:
            self._reader.join(2)
        return self.process.returncode


def write_config(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


def simulator_config(
    base_url: str,
    actors: Sequence[Mapping[str, Any]],
    *,
    token: str = "sim-token",
    interval: str = "1s",
    stale_after: str | None = None,
    windows: Sequence[Mapping[str, Any]] | None = None,
    machine_status: Mapping[str, Any] | None = None,
    **lynx: Any,
) -> dict[str, Any]:
    """A config document for an exporter polling a simulator quickly. Machine
    status is off unless ``machine_status`` is given: most tests are about
    evDashboard and count its requests."""
    poll: dict[str, Any] = {"interval": interval}
    if stale_after is not None:
        poll["stale_after"] = stale_after
    document: dict[str, Any] = {
        "lynx": {
            "base_url": base_url,
            "token": token,
            "timeout": "2s",
            "max_retries": 1,
            "retry_backoff": "50ms",
            "retry_backoff_max": "1s",
            "rate_limit_per_second": 0,
            "max_concurrency": 4,
            **lynx,
        },
        "poll": poll,
        "machine_status": dict(machine_status or {"enabled": False}),
        "actors": list(actors),
    }
    if windows is not None:
        document["windows"] = list(windows)
    return document


@contextmanager
def running_exporter(
    config_path: Path, *extra_args: str, env: Mapping[str, str] | None = None
) -> Iterator[ExporterProcess]:
    exporter = ExporterProcess(args=[f"--config.file={config_path}", *extra_args], env=env or {})
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()
