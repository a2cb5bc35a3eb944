"""A real Prometheus server for the end-to-end tests, on a free loopback port."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.harness import free_port, stop_process, wait_for


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def running_prometheus(
    binary: str,
    flags: list[str],
    log: Path,
    *,
    scheme: str = "http",
    timeout: float = 30,
    **ready_request: Any,
) -> Iterator[RunningPrometheus]:
    """Prometheus with ``flags``, yielded once ``/-/ready`` answers 200 (a GET with
    ``ready_request``: auth, client certificate, CA); terminated on the way out.
    Its stderr goes to ``log``, a file: a full pipe would block Prometheus."""
    port = free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, *flags, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    url = f"{scheme}://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            answer = requests.get(f"{url}/-/ready", timeout=1, **ready_request)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    try:
        wait_for(ready, timeout=timeout, what="prometheus ready")
        yield RunningPrometheus(url, process)
    finally:
        stop_process(process)
