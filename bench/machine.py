"""The machine a benchmark ran on, and the code it ran."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import prometheus_client

from bench.procs import REPO
from exporter import __version__


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    python: str
    system: str
    prometheus_client: str
    exporter_version: str
    git_commit: str


def machine_info() -> Machine:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "exporter"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += "+uncommitted exporter changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return Machine(
        cpu_model=model,
        cores=os.cpu_count() or 0,
        python=platform.python_version(),
        system=f"{platform.system()} {platform.release()}",
        prometheus_client=prometheus_client.__version__
        if hasattr(prometheus_client, "__version__")
        else _dist_version("prometheus_client"),
        exporter_version=__version__,
        git_commit=commit,
    )


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
