"""The processes under test: the simulator and the exporter, each in its own
interpreter (so neither shares a GIL with the other or with the bench), plus
/proc readings of their CPU time and memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from exporter.simulator import Fleet, FleetSpec

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-token"


class BenchError(RuntimeError):
    """A process under test did not behave (exited, never got ready)."""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # The command name may contain spaces: the fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time spent busy by every core since boot (``/proc/stat``), in seconds."""
    fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` memory field (VmHWM, VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, timeout: float = 30.0) -> Any:
    # Loopback http:// URLs of the processes this bench started.
    request = urllib.request.Request(url, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


@dataclass(frozen=True)
class FleetShape:
    actors: int
    machines_per_actor: int
    windows: int = 1

    @property
    def machines(self) -> int:
        return self.actors * self.machines_per_actor

    @property
    def targets(self) -> int:
        """One actor-wide target plus one per machine, per window."""
        return self.actors * (1 + self.machines_per_actor) * self.windows


# Two rolling windows of different lengths: a request's window is recognisable
# from its StartDate..EndDate span in the simulator's request log.
WINDOWS: tuple[tuple[str, int], ...] = (("24h", 86_400), ("7d", 604_800))


def exporter_config(
    shape: FleetShape,
    base_url: str,
    *,
    interval: float,
    stale_after: float,
    concurrency: int,
    rate_limit: float,
    status: bool,
) -> dict[str, Any]:
    """A config with every simulated machine configured by id. ``status``: machine
    status as the default has it (on for every configured machine, its own default
    interval), else ``machine_status: {enabled: false}``."""
    fleet = Fleet(FleetSpec(actors=shape.actors, machines_per_actor=shape.machines_per_actor))
    document: dict[str, Any] = {
        "lynx": {
            "base_url": base_url,
            "token": TOKEN,
            "timeout": "10s",
            "max_retries": 1,
            "retry_backoff": "100ms",
            "retry_backoff_max": "1s",
            "rate_limit_per_second": rate_limit,
            "max_concurrency": concurrency,
        },
        "poll": {"interval": _duration(interval), "stale_after": _duration(stale_after)},
        "windows": [{"name": name, "rolling": f"{seconds}s"} for name, seconds in WINDOWS][
            : shape.windows
        ],
        "actors": [
            {"id": actor, "machines": [{"id": m.id} for m in fleet.machines(actor)]}
            for actor in fleet.actor_ids()
        ],
    }
    if not status:
        document["machine_status"] = {"enabled": False}
    return document


def _duration(seconds: float) -> str:
    return f"{max(10, round(seconds * 1000))}ms"


# The glibc malloc tuning the image, the StatefulSet and docker-compose.yml set
# (docs/performance.md), so the numbers measured here are the deployed ones.
MALLOC_ENV: Mapping[str, str] = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}


class _Child:
    """A child process whose stderr goes to a file (a pipe could fill and stall it)."""

    def __init__(
        self, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        # Process start, on the clock the simulator stamps arrivals with.
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"{self.process.args!r} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class SimulatorProcess(_Child):
    """``python -m exporter.simulator`` on a free port."""

    def __init__(self, shape: FleetShape, latency: float, workdir: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "exporter.simulator",
            "--port=0",
            f"--actors={shape.actors}",
            f"--machines-per-actor={shape.machines_per_actor}",
            f"--latency={latency}",
            f"--token={TOKEN}",
        ]
        super().__init__(command, workdir / "simulator.log")
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()  # it prints its URL first
        if not line.startswith("http://"):
            self.check_alive()
            raise BenchError(f"simulator printed {line!r} instead of its URL")
        self.url = line

    def clear_requests(self) -> None:
        http_json("DELETE", f"{self.url}/_sim/requests")

    def requests(self) -> list[Mapping[str, Any]]:
        records: list[Mapping[str, Any]] = http_json("GET", f"{self.url}/_sim/requests", 60.0)
        return records


class ExporterProcess(_Child):
    """``python -m exporter`` with a generated config, JSON logs at warn level."""

    def __init__(self, config: Mapping[str, Any], workdir: Path) -> None:
        self.config_path = workdir / "config.yaml"
        self._write(config)
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={self.config_path}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.format=json",
            "--log.level=warn",
            "--web.enable-lifecycle",  # the bench reloads with POST /-/reload
        ]
        super().__init__(command, workdir / "exporter.log", MALLOC_ENV)
        self.url = f"http://127.0.0.1:{self.port}"

    def _write(self, config: Mapping[str, Any]) -> None:
        text = yaml.safe_dump(dict(config), sort_keys=False)
        self.config_path.write_text(text, encoding="utf-8")

    def reload(self, config: Mapping[str, Any]) -> None:
        """Replace the config file and POST /-/reload (targets keep their state)."""
        self._write(config)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            if response.status != 200:
                raise BenchError(f"reload answered {response.status}")

    def status(self, path: str) -> int:
        """The status code of a GET of ``path`` (0: no answer)."""
        return http_status(f"{self.url}{path}")

    def wait_status(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.status(path) == 200:
                return
            time.sleep(0.2)
        raise BenchError(f"exporter {path} not 200 within {timeout:.0f}s:\n{self.log_tail()}")
