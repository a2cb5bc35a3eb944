"""Files are read as files (issue 19, item A), through the config and real processes.

An outside probe found that ``token_file: /dev/zero`` grew the process until the
OOM killer came, that a FIFO as a token file blocked start-up for good (the
exporter never listened) or the one reload thread for good (later reloads and
listing-driven re-plans never applied, nothing logged), and that a 100 MB token
file was accepted and sent as a header. Now every file the config names must be
a regular file (a FIFO, a device, a directory, a symlink loop is a config error
naming the key and the kind) and is read with a cap (exporter/config/files.py):

- at start-up the process exits 1 at once, its peak memory that of any start;
- a reload (SIGHUP, ``POST /-/reload``) to such a file logs ``config reload
  failed``, sets ``nayax_ev_config_last_reload_successful`` to 0, keeps polling
  with the running config, and a later good reload still applies: the reload
  thread was never stuck.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.config import ConfigError, load_config, parse_config
from exporter.config.web import load_web_config
from exporter.simulator import SimulatorServer
from tests.harness import (
    REPO,
    config_check,
    parse_exposition,
    run_with_deadline,
    running_exporter,
    simulator_config,
    wait_for,
    write_config,
)

TOKEN = "sim-token"  # the simulator's
EXIT_DEADLINE = 20.0  # seconds; a refusal takes well under one, a hang fails
# Peak memory of a process that refused its config at start-up: the imports'
# ~50 MiB, nowhere near the 100 MB (or endless) file it was pointed at.
START_PEAK_MAX_KIB = 100 * 1024


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_loop(path: Path) -> None:
    path.symlink_to(path.with_name(path.name + ".other"))
    path.with_name(path.name + ".other").symlink_to(path)


def make_huge(path: Path) -> None:
    """100 MB on one line, sparse: instant to create, no disk used."""
    with path.open("wb") as handle:
        handle.truncate(100 * 1000 * 1000)


# How to turn a path into each kind of hostile file, and the reason given for it.
KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "dev_zero": (lambda p: p.symlink_to("/dev/zero"), "not a regular file: a character device"),
    "fifo": (make_fifo, "not a regular file: a FIFO"),
    "directory": (lambda p: p.mkdir(), "not a regular file: a directory"),
    "symlink_loop": (make_loop, "a symlink loop (too many levels of symbolic links)"),
    "huge": (make_huge, "larger than 64 KiB"),
}


def replace_with(path: Path, kind: str) -> str:
    """Put a ``kind`` where the file at ``path`` was; the reason it will get."""
    make, reason = KINDS[kind]
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.exists() or path.is_symlink():
        path.unlink()
    make(path)
    return reason


def restore(path: Path, text: str) -> None:
    for leftover in (path, path.with_name(path.name + ".other")):
        if leftover.is_dir() and not leftover.is_symlink():
            leftover.rmdir()
        elif leftover.exists() or leftover.is_symlink():
            leftover.unlink()
    path.write_text(text, encoding="utf-8")


# --- the config: every file it names --------------------------------------------------


def config_errors(load: Callable[[], object]) -> tuple[str, ...]:
    """The errors of the ConfigError that ``load()`` raises, in a thread with a
    deadline: a load that blocks (on a FIFO) fails the test, not the suite."""
    with pytest.raises(ConfigError) as caught:
        run_with_deadline(load, EXIT_DEADLINE, "the load")
    return caught.value.errors


@pytest.mark.parametrize("key", ["token_file", "refresh_token_file"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_token_file_that_is_no_regular_file_is_a_config_error(
    tmp_path: Path, kind: str, key: str
) -> None:
    secret = tmp_path / "TKN-looks-like-a-token"
    reason = replace_with(secret, kind)
    text = f"lynx: {{{key}: {secret.name}}}\nactors: [{{id: 1}}]\n"
    errors = config_errors(lambda: parse_config(text, environ={}, base_dir=tmp_path))
    assert errors == (f"lynx.{key}: cannot read the token file ({reason})",)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "symlink_loop"])
def test_a_config_file_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.yaml"
    reason = replace_with(path, kind)
    assert config_errors(lambda: load_config(path)) == (f"{path}: cannot read: {reason}",)
    assert config_errors(lambda: load_web_config(path)) == (f"{path}: cannot read: {reason}",)


def test_a_config_over_16_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as handle:
        handle.truncate(16 * 1024 * 1024 + 1)
    expected = (f"{path}: cannot read: larger than 16 MiB",)
    assert config_errors(lambda: load_config(path)) == expected
    assert config_errors(lambda: load_web_config(path)) == expected


def test_tls_files_that_are_fifos_are_refused(tmp_path: Path) -> None:
    """OpenSSL would block on them for good, at start-up, before listening."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    make_fifo(cert)
    make_fifo(key)
    web = write_config(
        tmp_path / "web.yml",
        {"tls_server_config": {"cert_file": "server.crt", "key_file": str(key)}},
    )
    assert config_errors(lambda: load_web_config(web)) == (
        f"tls_server_config.cert_file: cannot read {cert}: not a regular file: a FIFO",
        f"tls_server_config.key_file: cannot read {key}: not a regular file: a FIFO",
    )


def test_config_check_of_a_fifo_returns_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    make_fifo(fifo)
    result = config_check(f"--config.file={fifo}", timeout=EXIT_DEADLINE)
    assert result.returncode == 1
    assert "cannot read: not a regular file: a FIFO" in result.stderr


# --- start-up: the process refuses at once, memory bounded ------------------------------


# The exporter's own entry point, reporting its peak RSS as it exits. VmHWM, not
# wait4's ru_maxrss: that one keeps the peak of the process before exec, which is
# the forking test runner's, hundreds of MB late in a full run.
_PEAK_REPORTING_RUN = """
import os, sys
exit_now = os._exit
def exit_with_peak(code):
    with open('/proc/self/status') as status:
        peak = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    with open(os.environ['PEAK_FILE'], 'w') as out:
        out.write(peak)
    exit_now(code)
os._exit = exit_with_peak
sys.argv[0] = 'nayax-ev-exporter'
from exporter.launch import run
run()
"""


def run_to_exit(args: list[str], log: Path) -> tuple[int, int]:
    """Run the exporter with ARGS to its end; its exit code and peak RSS (KiB,
    VmHWM of the process itself). A run past the deadline fails."""
    peak_file = log.with_suffix(".peak")
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _PEAK_REPORTING_RUN, "--log.format=json", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PEAK_FILE": str(peak_file)},
        )
    deadline = time.monotonic() + EXIT_DEADLINE
    while True:
        pid, status, _usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, int(peak_file.read_text())
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"still running after {EXIT_DEADLINE}s: {log.read_text()}")
        time.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_start_up_with_a_hostile_token_file_exits_at_once(
    tmp_path: Path, simulator: SimulatorServer, kind: str
) -> None:
    secret = tmp_path / "token"
    reason = replace_with(secret, kind)
    document = simulator_config(simulator.url, [{"id": simulator.fleet.actor_ids()[0]}])
    del document["lynx"]["token"]
    document["lynx"]["token_file"] = str(secret)
    config = write_config(tmp_path / "config.yaml", document)
    log = tmp_path / "stderr.log"
    code, peak_kib = run_to_exit([f"--config.file={config}"], log)
    text = log.read_text(encoding="utf-8")
    print(f"{kind}: exit {code}, peak RSS {peak_kib // 1024} MiB")
    assert code == 1, text
    assert f'"problem": "lynx.token_file: cannot read the token file ({reason})"' in text
    assert str(secret) not in text  # the token file's path is never quoted
    assert peak_kib < START_PEAK_MAX_KIB, peak_kib
    assert not simulator.requests()  # nothing was sent, least of all 100 MB as a header


# --- reload: refused, reported, and the reload thread stays free --------------------------


def reload_successful(exporter: Any) -> float:
    series = parse_exposition(exporter.scrape())
    return next(v for (name, _), v in series.items() if name.endswith("last_reload_successful"))


def failures(exporter: Any) -> list[dict[str, Any]]:
    return [e for e in exporter.logs() if e.get("event") == "config reload failed"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_reload_to_a_hostile_token_file_fails_and_the_next_one_applies(
    tmp_path: Path, simulator: SimulatorServer, kind: str
) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n", encoding="utf-8")
    document = simulator_config(
        simulator.url, [{"id": simulator.fleet.actor_ids()[0]}], interval="300ms"
    )
    del document["lynx"]["token"]
    document["lynx"]["token_file"] = "token"
    config = write_config(tmp_path / "config.yaml", document)
    with running_exporter(config, "--web.enable-lifecycle") as exporter:
        wait_for(exporter.ready, timeout=15, what="the first poll")
        reason = replace_with(secret, kind)
        problem = f"lynx.token_file: cannot read the token file ({reason})"

        exporter.signal(signal.SIGHUP)
        wait_for(lambda: len(failures(exporter)) == 1, timeout=10, what="SIGHUP's failure")
        answer = requests.post(f"{exporter.url}/-/reload", timeout=10)
        assert answer.status_code == 500
        assert answer.text == f"failed to reload config:\n{problem}\n"
        assert [e["problem"] for e in failures(exporter)] == [problem, problem]
        assert reload_successful(exporter) == 0.0

        failed_at = time.monotonic()  # the running config still polls, with its token
        wait_for(
            lambda: any(r.monotonic > failed_at + 0.5 for r in simulator.requests()),
            timeout=10,
            what="polls after the failed reloads",
        )
        restore(secret, TOKEN + "\n")
        document["windows"] = [{"name": "7d", "rolling": "7d"}]
        write_config(config, document)
        exporter.signal(signal.SIGHUP)  # would queue behind a stuck reload for ever
        wait_for(
            lambda: 'window="7d"' in exporter.scrape(),
            timeout=10,
            what="the good reload to apply",
        )
        assert reload_successful(exporter) == 1.0
    assert all(TOKEN not in line for line in exporter.log_lines)
