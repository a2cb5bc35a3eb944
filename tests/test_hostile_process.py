"""The process's own limits, probed from outside (issue 11, items 10, 12, 15, 16).

Real exporter processes against the in-test simulator:

- a 429 asking for ten years (or until year 9999) holds its token no longer than
  ``lynx.retry_after_max``, and a reload that changes ``lynx`` drops the hold;
- a background thread that dies turns ``/-/healthy`` to 503 and says so in the
  log: never a silent freeze (the death is injected into a real process);
- the first round starts at once: ``--once`` at the default 60 s interval ends in
  seconds, ``/-/ready`` is not an interval late;
- signal handlers come before anything slow: nothing but a few standard-library
  modules is imported before them (issue 19: not even the version look-up), a
  SIGHUP in the first milliseconds of the process is a reload, not death, and so
  is one while the config is still being read (a load the test holds open);
  SIGTERM ends the process within 5 s during start-up and during a reload that
  hangs.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.simulator import Fault, FaultKind, Fleet, FleetSpec, SimulatorServer
from tests.harness import REPO, ExporterProcess, running_exporter, simulator_config, wait_for

EXIT_BUDGET = 5.0
TOKEN = "sim-token"


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(FleetSpec(seed=5, actors=1, machines_per_actor=1, silence_period_s=1e9))


@pytest.fixture
def simulator(fleet: Fleet) -> Iterator[SimulatorServer]:
    with SimulatorServer(fleet, tokens=TOKEN) as server:
        yield server


def actor_wide(simulator: SimulatorServer) -> list[dict[str, Any]]:
    return [{"id": simulator.fleet.actor_ids()[0]}]


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def sent_after(simulator: SimulatorServer, moment: float) -> list[float]:
    return [r.monotonic for r in simulator.requests() if r.monotonic > moment]


def the_429(simulator: SimulatorServer) -> float:
    wait_for(
        lambda: any(r.status == 429 for r in simulator.requests()),
        timeout=10,
        what="the 429 to be served",
    )
    return next(r.monotonic for r in simulator.requests() if r.status == 429)


# --- item 10: a Retry-After from the far future --------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    ["315360000", "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["ten_years", "year_9999"],
)
def test_a_far_retry_after_holds_the_token_only_until_retry_after_max(
    simulator: SimulatorServer, tmp_path: Path, retry_after: str
) -> None:
    document = simulator_config(
        simulator.url,
        actor_wide(simulator),
        interval="500ms",
        stale_after="60s",
        retry_after_max="2s",
    )
    config = write(tmp_path / "config.yaml", document)
    with running_exporter(config) as exporter:
        wait_for(exporter.ready, timeout=15, what="the first poll")
        simulator.add_fault(
            Fault(FaultKind.STATUS, status=429, retry_after=retry_after, remaining=1)
        )
        limited_at = the_429(simulator)
        wait_for(
            lambda: bool(sent_after(simulator, limited_at)),
            timeout=2.0 + 4.0,
            what="polling to resume after retry_after_max",
        )
    resumed = sent_after(simulator, limited_at)[0] - limited_at
    assert 1.9 <= resumed < 4.0, f"resumed {resumed:.2f}s after the 429 (cap 2 s)"


def test_a_reload_that_changes_lynx_drops_the_hold(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    document = simulator_config(
        simulator.url, actor_wide(simulator), interval="500ms", stale_after="60s"
    )
    config = write(tmp_path / "config.yaml", document)
    with running_exporter(config) as exporter:
        wait_for(exporter.ready, timeout=15, what="the first poll")
        simulator.add_fault(
            Fault(FaultKind.STATUS, status=429, retry_after="315360000", remaining=1)
        )
        limited_at = the_429(simulator)
        time.sleep(1.5)
        assert not sent_after(simulator, limited_at + 0.1), "the token was not held"
        document["lynx"]["timeout"] = "3s"
        write(config, document)
        reloaded_at = time.monotonic()
        exporter.signal(signal.SIGHUP)
        wait_for(
            lambda: bool(sent_after(simulator, reloaded_at)),
            timeout=5,
            what="polling to resume after the reload",
        )


# --- item 12: a background thread that dies ------------------------------------------

# Runs the real command line with one function broken after its first call.
BREAK_AND_RUN = """
import sys
import {module} as target

original = target.{owner}.{name}
calls = []

# Not an Exception: what really ends a thread (data only ever raises Exceptions,
# which the render thread survives).
class ThreadKilled(BaseException):
    pass


def broken(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        raise ThreadKilled("injected failure")
    return original(*args, **kwargs)

setattr(target.{owner}, "{name}", broken)
from exporter.cli import main
raise SystemExit(main())
"""


@pytest.mark.parametrize(
    ("module", "owner", "name", "thread"),
    [
        ("exporter.metrics.exposition", "DataRenderer", "render_bodies", "exposition"),
        ("exporter.polling.poller", "Poller", "_drain", "poll-scheduler"),
    ],
    ids=["render_thread", "poll_scheduler"],
)
def test_a_dead_background_thread_takes_healthy_down(  # noqa: PLR0917 - parametrized
    simulator: SimulatorServer, tmp_path: Path, module: str, owner: str, name: str, thread: str
) -> None:
    document = simulator_config(simulator.url, actor_wide(simulator), interval="300ms")
    config = write(tmp_path / "config.yaml", document)
    code = BREAK_AND_RUN.format(module=module, owner=owner, name=name)
    port_holder = ExporterProcess(args=[])
    command = [
        sys.executable,
        "-c",
        code,
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port_holder.port}",
        "--log.format=json",
    ]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port_holder.port}"
    try:

        def health() -> int | None:
            try:
                return requests.get(f"{url}/-/healthy", timeout=1).status_code
            except requests.RequestException:
                return None

        wait_for(lambda: health() == 503, timeout=15, what="/-/healthy to turn 503")
        assert requests.get(f"{url}/metrics", timeout=2).status_code == 200  # still served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert "Traceback" not in stderr, stderr
    entries = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    died = [e for e in entries if e.get("event") == "background thread died"]
    assert [(e["level"], e["thread"]) for e in died] == [("error", thread)], entries


def test_a_reload_to_an_absurd_interval_freezes_nothing(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """``interval: 1000000000000d`` is refused, or taken without killing a thread:
    either way the exporter stays healthy and a later reload shows up in /metrics."""
    document = simulator_config(simulator.url, actor_wide(simulator), interval="300ms")
    config = write(tmp_path / "config.yaml", document)
    with running_exporter(config) as exporter:
        wait_for(exporter.ready, timeout=15, what="the first poll")
        absurd = {**document, "poll": {"interval": "1000000000000d"}}
        write(config, absurd)
        exporter.signal(signal.SIGHUP)
        time.sleep(1.5)
        assert exporter.healthy()
        document["windows"] = [{"name": "7d", "rolling": "7d"}]
        write(config, document)
        exporter.signal(signal.SIGHUP)
        wait_for(
            lambda: 'window="7d"' in exporter.scrape(),
            timeout=10,
            what="the next reload's target in /metrics",
        )
        assert exporter.healthy()


# --- item 15: the first round starts at once ------------------------------------------


def test_once_polls_at_once_at_the_default_interval(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    document = simulator_config(simulator.url, actor_wide(simulator), interval="60s")
    config = write(tmp_path / "config.yaml", document)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--config.file={config}", "--once"],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()
    assert b"nayax_ev_target_up" in result.stdout
    assert elapsed < 10, f"--once took {elapsed:.1f}s"


def test_ready_is_not_an_interval_late(simulator: SimulatorServer, tmp_path: Path) -> None:
    document = simulator_config(simulator.url, actor_wide(simulator), interval="60s")
    config = write(tmp_path / "config.yaml", document)
    with running_exporter(config) as exporter:
        wait_for(exporter.ready, timeout=10, what="/-/ready (one target: polled at once)")


# --- item 16: signals before anything slow ---------------------------------------------


def caught_signals(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    line = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return int(line.split()[1], 16)


def catches(pid: int, signum: int) -> bool:
    return bool(caught_signals(pid) & (1 << (signum - 1)))


def feed_fifo(path: Path, text: str, timeout: float = 10.0) -> None:
    """Write ``text`` to the FIFO once its reader (the exporter) has opened it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


# The real entry point, with every config load held until the test opens a gate
# (a FIFO): the stand-in for a config that takes long to read. The exporter itself
# no longer blocks on any file (a FIFO as token file is refused: test_special_files).
GATED_RUN = """
import os
import exporter.cli as cli

original = cli.load_config


def gated(path, **kwargs):
    with open(os.environ["EXPORTER_TEST_GATE"], "rb") as gate:  # waits for a writer
        gate.read()
    return original(path, **kwargs)


cli.load_config = gated
from exporter.launch import run

run()
"""


class GatedExporter(ExporterProcess):
    """An exporter process whose config loads wait for ``feed_fifo(gate, ...)``."""

    def start(self, wait_healthy: bool = False) -> GatedExporter:
        assert not wait_healthy  # the load waits for the test
        command = [
            sys.executable,
            "-c",
            GATED_RUN,
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.format=json",
            *self.args,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        return self


def gated_exporter(simulator: SimulatorServer, tmp_path: Path) -> tuple[GatedExporter, Path]:
    """A started exporter whose config load blocks until the test feeds the gate."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    document = simulator_config(simulator.url, actor_wide(simulator), interval="1s")
    config = write(tmp_path / "config.yaml", document)
    exporter = GatedExporter(
        args=[f"--config.file={config}"], env={"EXPORTER_TEST_GATE": str(gate)}
    )
    return exporter.start(), gate


def test_sighup_while_starting_is_a_reload_and_sigterm_beats_a_hung_reload(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    exporter, gate = gated_exporter(simulator, tmp_path)
    assert exporter.process is not None
    pid = exporter.process.pid
    try:
        wait_for(lambda: catches(pid, signal.SIGHUP), timeout=10, what="a SIGHUP handler")
        assert not exporter.healthy()  # still reading its config
        exporter.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert exporter.process.poll() is None, "SIGHUP during start-up killed the process"
        feed_fifo(gate, "go")
        wait_for(exporter.healthy, timeout=15, what="the exporter to start")
        # The SIGHUP's reload now waits at the gate again: a reload that does
        # not end. SIGTERM must still end the process promptly.
        wait_for(
            lambda: any('"reloading configuration"' in line for line in exporter.log_lines),
            timeout=5,
            what="the reload to begin",
        )
        signalled = time.monotonic()
        exporter.signal(signal.SIGTERM)
        returncode = exporter.process.wait(timeout=EXIT_BUDGET + 5)
        elapsed = time.monotonic() - signalled
    finally:
        exporter.stop(timeout=2)
    assert returncode == 0, "\n".join(exporter.log_lines)
    assert elapsed < EXIT_BUDGET, elapsed


def test_sigterm_during_start_up_exits_promptly(simulator: SimulatorServer, tmp_path: Path) -> None:
    exporter, _gate = gated_exporter(simulator, tmp_path)
    assert exporter.process is not None
    pid = exporter.process.pid
    try:
        wait_for(lambda: catches(pid, signal.SIGTERM), timeout=10, what="a SIGTERM handler")
        time.sleep(0.3)  # well into reading the (held) config
        signalled = time.monotonic()
        exporter.signal(signal.SIGTERM)
        returncode = exporter.process.wait(timeout=EXIT_BUDGET + 5)
        elapsed = time.monotonic() - signalled
    finally:
        exporter.stop(timeout=2)
    assert returncode == 0, "\n".join(exporter.log_lines)
    assert elapsed < EXIT_BUDGET, elapsed


# --- issue 19: nothing slow before the handlers -----------------------------------------

# Runs ``python -m exporter`` as runpy does, reporting the modules loaded at the
# moment the SIGHUP handler is installed (and then ending the process).
SPY_ON_HANDLERS = """
import os, runpy, signal, sys, time

before = set(sys.modules)
install = signal.signal
started = time.perf_counter()


def spy(signum, handler):
    if signum == signal.SIGHUP:
        took = time.perf_counter() - started
        print(f"{took * 1000:.1f}", *sorted(set(sys.modules) - before), flush=True)
        os._exit(0)
    return install(signum, handler)


signal.signal = spy
sys.argv = ["exporter", "--config.file=/nonexistent"]
runpy.run_module("exporter", run_name="__main__", alter_sys=True)
"""
FIRST_MODULES = {"exporter", "exporter.launch", "exporter.signals"}  # __main__ is "__main__"


def test_nothing_slow_is_imported_before_the_signal_handlers() -> None:
    """When ``python -m exporter`` installs its SIGHUP handler, it has imported
    its three entry modules and a few standard-library ones: not
    importlib.metadata (the version look-up, ~35 ms, which let a SIGHUP kill the
    process), nothing of a third party, no other module of the exporter."""
    result = subprocess.run(
        [sys.executable, "-c", SPY_ON_HANDLERS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    took, *loaded = result.stdout.split()
    print(f"handlers installed {took} ms after exporter code began; new modules: {loaded}")
    outside_stdlib = {m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside_stdlib == FIRST_MODULES
    assert "importlib.metadata" not in loaded


def cpu_ms(pid: int) -> float:
    """The process's own time on a CPU so far (its main thread; the only one
    before the handlers), in milliseconds, from /proc/<pid>/schedstat (ns)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e6


@pytest.fixture(scope="module")
def warm_start() -> None:
    """One start-up first: a cold page cache costs a process's first start
    CPU time in page faults, which would move the handlers later."""
    subprocess.run([sys.executable, "-c", "import exporter.launch"], cwd=REPO, check=True)


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="no /proc/*/schedstat")
@pytest.mark.parametrize("after_ms", [30, 35, 40])
@pytest.mark.serial  # milliseconds of CPU after exec: alone, not beside other tests
@pytest.mark.usefixtures("warm_start")
def test_a_sighup_in_the_first_milliseconds_is_a_reload(
    simulator: SimulatorServer, tmp_path: Path, after_ms: int
) -> None:
    """SIGHUP once the new process has run ``after_ms`` ms of CPU: its own running
    time rather than the wall clock, so the moment is the same however loaded the
    machine is. The handlers used to come after ~42 ms of it (the version
    look-up); now after ~20, most of it the interpreter's own start-up (~17 ms
    here with the editable install's path finder), before which no Python
    program has a handler. The process must survive and take it as a reload."""
    config = write(tmp_path / "config.yaml", simulator_config(simulator.url, actor_wide(simulator)))
    exporter = ExporterProcess(args=[f"--config.file={config}"]).start(wait_healthy=False)
    assert exporter.process is not None
    pid = exporter.process.pid
    try:
        while cpu_ms(pid) < after_ms:
            assert exporter.process.poll() is None, "\n".join(exporter.log_lines)
            time.sleep(0.0002)
        sent_at = cpu_ms(pid)
        exporter.signal(signal.SIGHUP)
        print(f"SIGHUP sent after {sent_at:.1f} ms of CPU")
        wait_for(exporter.healthy, timeout=20, what="the exporter to survive and start")
        wait_for(
            lambda: any('"trigger": "SIGHUP"' in line for line in exporter.log_lines),
            timeout=10,
            what="the SIGHUP's reload",
        )
        print(f"SIGHUP sent after {sent_at:.1f} ms of CPU: a reload")
    finally:
        exporter.stop()
