"""The container image, really built and really run.

No registry and no Docker engine are reachable here, so the image is built the
way CI builds it: ``ci/container/build-base-image.sh`` debootstraps a Debian
bookworm base (cached), ``buildah bud`` builds the Dockerfile on it, and
``buildah run`` starts the exporter in demo mode inside the image, sharing the
host network, where this test scrapes it. (``podman run`` needs cgroups, which
this sandbox lacks.) All buildah/podman calls use the vfs storage driver, which
podman and buildah share.

The build-and-run tests are marked ``container``; they need root, buildah,
podman and debootstrap, and are never skipped in CI (``require_tool`` fails
there instead). hadolint and the .dockerignore checks are quick and unmarked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.metrics.families import DATA_FAMILIES
from tests.conftest import require_tool
from tests.harness import REPO, free_port, parse_exposition, wait_for

STORAGE = ("--storage-driver", "vfs")
BASE_IMAGE = "localhost/base:test"
IMAGE = "localhost/nayax-ev-exporter:test"
UID = 65532  # the Dockerfile's USER, numeric
USER = f"{UID}:{UID}"
VENV = Path("opt/venv")
SITE_PACKAGES = VENV / "lib" / "python3.11" / "site-packages"
# gcc, cc, g++, x86_64-linux-gnu-gcc-12, clang++, ...
COMPILER = re.compile(r"([\w.]+-)?(gcc|g\+\+|cc|c\+\+|clang|clang\+\+|tcc)(-[\d.]+)?")
BIN_DIRS = ("usr/local/bin", "usr/bin", "bin", "usr/local/sbin", "usr/sbin", "sbin", "opt/venv/bin")


def run(command: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command), capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def buildah(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run(["buildah", *STORAGE, *args], timeout=timeout)


@dataclass(frozen=True)
class Container:
    name: str
    root: Path  # the container's root filesystem, mounted on the host
    config: dict[str, Any]  # the image's Docker config (User, Entrypoint, ...)

    def run_args(self, *command: str, env: Sequence[str] = ()) -> list[str]:
        """A `buildah run` command line, restricted like the Kubernetes pod:
        every capability dropped, the image's own (non-root) user."""
        env_flags = [flag for value in env for flag in ("--env", value)]
        return [
            "buildah",
            *STORAGE,
            "run",
            "--isolation",
            "chroot",
            "--cap-drop",
            "all",
            *env_flags,
            self.name,
            "--",
            *command,
        ]


@pytest.fixture(scope="module")
def image() -> str:
    for tool in ("buildah", "podman", "debootstrap", "tar"):
        require_tool(tool)
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap, vfs storage)")
    run(["bash", "ci/container/build-base-image.sh", BASE_IMAGE])
    # Drop the previous build first, so reruns do not pile up untagged images.
    subprocess.run(["buildah", *STORAGE, "rmi", "--force", IMAGE], capture_output=True, check=False)
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--format",
        "docker",  # OCI images drop HEALTHCHECK
        "--build-arg",
        f"BASE={BASE_IMAGE}",
        "--tag",
        IMAGE,
        ".",
    )
    return IMAGE


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    name = f"nayax-ev-exporter-test-{os.getpid()}"
    buildah("from", "--name", name, image)
    try:
        root = Path(buildah("mount", name).stdout.strip())
        inspected = json.loads(buildah("inspect", "--type", "container", name).stdout)
        yield Container(name, root, inspected["Docker"]["config"])
    finally:
        subprocess.run(["buildah", *STORAGE, "umount", name], capture_output=True, check=False)
        subprocess.run(["buildah", *STORAGE, "rm", name], capture_output=True, check=False)


# --- static checks -------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run(
        [hadolint, "Dockerfile"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nUSER root\n", encoding="utf-8")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_dockerfile_shape() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "ARG BASE=python:3.11-slim"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${BASE} AS builder", "FROM ${BASE}"]
    assert f"USER {USER}" in lines
    assert 'ENTRYPOINT ["nayax-ev-exporter"]' in lines
    assert "EXPOSE 9877" in lines


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent
    directories decides; ``!`` re-includes. ``*`` stays within one path segment."""

    def regex(pattern: str) -> re.Pattern[str]:
        parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
        translated = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return re.compile("".join(translated.get(p, re.escape(p)) for p in parts))

    segments = path.split("/")
    candidates = ["/".join(segments[: i + 1]) for i in range(len(segments))]
    excluded = False
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = regex(line.lstrip("!"))
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_to_what_the_wheel_needs() -> None:
    for kept in ("pyproject.toml", "README.md", "exporter/cli.py", "exporter/simulator/fleet.py"):
        assert not dockerignore_excludes(kept), kept
    for dropped in (
        ".git/HEAD",
        "tests/test_container.py",
        "tests/harness.py",
        "bench/results/run.json",
        ".venv/bin/python",
        ".mypy_cache/3.11/x.json",
        "exporter/__pycache__/cli.cpython-311.pyc",
        "exporter/simulator/__pycache__/fleet.cpython-311.pyc",
        ".pytest_cache/v/cache",
        "deploy/kubernetes/statefulset.yaml",
        "Dockerfile",
    ):
        assert dockerignore_excludes(dropped), dropped


# --- the image's configuration -------------------------------------------------


@pytest.mark.container
def test_image_config(container: Container) -> None:
    config = container.config
    assert config["User"] == USER
    uid, gid = (int(part) for part in config["User"].split(":"))
    assert uid != 0 and gid != 0
    assert config["Entrypoint"] == ["nayax-ev-exporter"]
    assert config["Cmd"] == ["--config.file=/etc/nayax-ev-exporter/config.yaml"]
    assert "9877/tcp" in config["ExposedPorts"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # glibc malloc tuning comes from the image's environment (docs/performance.md).
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert env["MALLOC_MMAP_THRESHOLD_"] == "1048576"
    check = config["Healthcheck"]["Test"]
    assert check[:2] == ["CMD", "python3"]
    assert "curl" not in " ".join(check) and "wget" not in " ".join(check)
    assert env["NAYAX_EV_HEALTHCHECK_URL"] == "http://127.0.0.1:9877/-/healthy"


# --- the image's contents --------------------------------------------------------


@pytest.mark.container
def test_no_compilers_pip_caches_sources_or_tests(container: Container) -> None:
    root = container.root
    assert (root / VENV / "bin" / "nayax-ev-exporter").is_file()
    binaries = {
        f"/{directory}/{path.name}"
        for directory in BIN_DIRS
        if (root / directory).is_dir()
        for path in (root / directory).iterdir()
    }
    assert "/usr/bin/python3" in binaries
    compilers = sorted(b for b in binaries if COMPILER.fullmatch(b.rsplit("/", 1)[1]))
    assert not compilers, compilers
    caches = [p for p in root.glob("**/.cache/pip") if p.is_dir()] + list(root.glob("tmp/pip-*"))
    assert not caches, caches
    for leftover in ("src", "wheels", "opt/build", "tests"):
        assert not (root / leftover).exists(), f"/{leftover} is in the final image"
    # The wheel carries only the exporter package: no tests, no benchmarks.
    installed = {p.name for p in (root / SITE_PACKAGES).iterdir()}
    assert "exporter" in installed
    assert not {"tests", "bench"} & installed
    # pip left the venv after installing: nothing in the image can install more.
    assert not (root / SITE_PACKAGES / "pip").exists()


@pytest.mark.container
def test_bytecode_is_compiled_at_build_time(container: Container) -> None:
    # The root filesystem is read-only at run time, so every module must already
    # have its .pyc next to it (PYTHONDONTWRITEBYTECODE keeps Python from trying).
    sources = sorted((container.root / SITE_PACKAGES).rglob("*.py"))
    assert len(sources) > 100
    missing = [
        str(source.relative_to(container.root))
        for source in sources
        if not (source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc").is_file()
    ]
    assert not missing, missing[:20]


# --- running it ----------------------------------------------------------------


def newer_than(root: Path, marker: Path) -> set[str]:
    """Paths in the container's filesystem changed after ``marker`` was touched."""
    threshold = marker.stat().st_mtime
    changed: set[str] = set()
    for directory, subdirs, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        subdirs[:] = [d for d in subdirs if str(relative / d) not in ("proc", "sys", "dev")]
        for name in [*subdirs, *files]:
            path = Path(directory) / name
            try:
                if path.lstat().st_mtime > threshold:
                    changed.add(str(relative / name))
            except FileNotFoundError:
                continue
    return changed


def touch_marker(path: Path) -> Path:
    path.touch()
    time.sleep(1.1)  # mtime granularity on some filesystems is 1 s
    return path


@dataclass
class Background:
    """`buildah run` in its own session: buildah, its chroot helpers and, at the
    bottom, the exporter's Python process, all in one process group."""

    process: subprocess.Popen[bytes]

    def exporter(self) -> ProcessInfo:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                status = (entry / "status").read_text()
            except OSError:
                continue
            # Fields after the ")" that ends the command name: state, ppid, pgrp, ...
            pgrp = int(stat.rsplit(")", 1)[1].split()[2])
            if pgrp == self.process.pid and argv[0].endswith(b"python3"):
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                return ProcessInfo(
                    pid=int(entry.name),
                    uids=tuple(int(u) for u in fields["Uid"].split()),
                    effective_caps=int(fields["CapEff"], 16),
                )
        raise AssertionError("the exporter's process was not found under buildah run")

    def stop(self, timeout: float = 15.0) -> str:
        """SIGTERM to the exporter itself, as Kubernetes sends it to the
        container's main process (buildah would SIGKILL it when signalled)."""
        if self.process.poll() is None:
            with contextlib.suppress(AssertionError, ProcessLookupError):
                os.kill(self.exporter().pid, signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # our own group only
            output, _ = self.process.communicate()
        return output.decode("utf-8", "replace")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    uids: tuple[int, ...]  # real, effective, saved, filesystem
    effective_caps: int


@pytest.mark.container
def test_demo_serves_every_family_from_the_image(container: Container, tmp_path: Path) -> None:
    # A no-op run first: what buildah itself touches (e.g. /run) is not the exporter's doing.
    baseline_marker = touch_marker(tmp_path / "baseline")
    run(container.run_args("true"))
    touched_by_buildah = newer_than(container.root, baseline_marker)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    marker = touch_marker(tmp_path / "marker")
    exporter = Background(
        subprocess.Popen(
            container.run_args(
                "nayax-ev-exporter", "--demo", f"--web.listen-address=127.0.0.1:{port}"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )
    output = ""
    try:

        def healthy() -> bool:
            if exporter.process.poll() is not None:
                raise AssertionError(f"exporter exited: {exporter.stop()}")
            try:
                return requests.get(f"{url}/-/healthy", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=60, interval=0.25, what="/-/healthy from the container")
        wanted = {family.name for family in DATA_FAMILIES}
        assert "nayax_ev_target_up" in wanted and len(wanted) > 10

        def first_round_published() -> bool:
            series = parse_exposition(requests.get(f"{url}/metrics", timeout=5).text)
            up = [value for (name, _), value in series.items() if name == "nayax_ev_target_up"]
            targets = series[("nayax_ev_targets", frozenset())]
            present = {name for name, _ in series} & wanted
            return present == wanted and len(up) == targets > 0 and all(v == 1.0 for v in up)

        # The demo polls every 10 s; its first round lands well within 40 s.
        wait_for(first_round_published, timeout=40, interval=1, what="every data family, all up")
        series = parse_exposition(requests.get(f"{url}/metrics", timeout=5).text)
        assert series[("nayax_ev_shard_info", frozenset({("index", "0"), ("count", "1")}))] == 1.0
        landing = requests.get(f"{url}/", timeout=5)
        assert landing.status_code == 200 and "Nayax EV Exporter" in landing.text

        # At run time: the image's non-root user, no capabilities at all.
        process = exporter.exporter()
        assert set(process.uids) == {UID}
        assert process.effective_caps == 0

        # The image's own HEALTHCHECK command, run inside the image against this port.
        check = container.config["Healthcheck"]["Test"][1:]
        healthy_url = f"NAYAX_EV_HEALTHCHECK_URL={url}/-/healthy"
        result = subprocess.run(
            container.run_args(*check, env=[healthy_url]), capture_output=True, check=False
        )
        assert result.returncode == 0, result.stderr
        closed = f"NAYAX_EV_HEALTHCHECK_URL=http://127.0.0.1:{free_port()}/-/healthy"
        result = subprocess.run(
            container.run_args(*check, env=[closed]), capture_output=True, check=False
        )
        assert result.returncode != 0
    finally:
        output = exporter.stop()

    assert "exporter stopped" in output, output[-2000:]
    assert exporter.process.returncode == 0, output[-2000:]
    # Nothing written to the image's filesystem: readOnlyRootFilesystem works.
    written = newer_than(container.root, marker) - touched_by_buildah
    assert not written, sorted(written)
