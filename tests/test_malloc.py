"""glibc malloc tuning: applied unless overridden, and it really returns freed buffers."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from exporter.malloc import ARENA_MAX, MMAP_THRESHOLD, tune_malloc

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="glibc-specific tuning (CI runs Debian: glibc)"
)

# Frees a 10 MB buffer (the size of a rendered exposition at 10,000 machines)
# five times, each with a small allocation made after it, and reports how much of
# that memory the process still holds.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    from exporter.malloc import tune_malloc
    applied = tune_malloc(os.environ) if sys.argv[1] == "tuned" else {}
    def rss_kib():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))
    keep, base = [], rss_kib()
    for _ in range(5):
        big = b"x" * (10 << 20)
        keep.append(bytes(200))
        del big
    print(json.dumps({"applied": applied, "retained_mib": (rss_kib() - base) / 1024}))
    """
)


def probe(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={}
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_freed_exposition_buffers_go_back_to_the_system() -> None:
    untuned, tuned = probe("untuned"), probe("tuned")
    assert tuned["applied"] == {
        "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD,
        "MALLOC_ARENA_MAX": ARENA_MAX,
    }
    assert isinstance(tuned["retained_mib"], float) and tuned["retained_mib"] < 2
    # The control: glibc's dynamic threshold keeps a freed 10 MB block's pages.
    assert isinstance(untuned["retained_mib"], float) and untuned["retained_mib"] >= 8


def test_operator_environment_wins() -> None:
    # glibc has read these variables itself at start-up; mallopt must not undo them.
    assert tune_malloc({"MALLOC_ARENA_MAX": "8", "MALLOC_MMAP_THRESHOLD_": "65536"}) == {}
    assert tune_malloc({"MALLOC_ARENA_MAX": "8"}) == {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
