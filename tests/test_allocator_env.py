"""glibc malloc tuning lives in the deployment environment, not in the process.

The image (Dockerfile ENV), the Kubernetes StatefulSet, docker-compose.yml and
the benchmark's exporter process all set the same two variables, so what the
benchmark measures is what runs in production (docs/performance.md). The
container test checks the built image's environment too.
"""

from __future__ import annotations

import re

from bench.procs import MALLOC_ENV
from tests.harness import REPO
from tests.test_compose import service
from tests.test_kubernetes import container

EXPECTED = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}


def _dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    return dict(re.findall(r"\b(MALLOC_[A-Z_]+)=(\S+)", final_stage))


def test_every_deployment_sets_the_same_malloc_tuning() -> None:
    assert _dockerfile_env() == EXPECTED
    k8s = {e["name"]: e.get("value") for e in container()["env"] if e["name"].startswith("MALLOC")}
    assert k8s == EXPECTED
    compose = service("exporter")["environment"]
    assert {k: v for k, v in compose.items() if k.startswith("MALLOC")} == EXPECTED
    assert dict(MALLOC_ENV) == EXPECTED


def test_the_exporter_no_longer_tunes_malloc_itself() -> None:
    assert not (REPO / "exporter" / "malloc.py").exists()
    sources = [p.read_text(encoding="utf-8") for p in (REPO / "exporter").rglob("*.py")]
    assert not any("mallopt" in text for text in sources)
