"""glibc malloc tuning for a long-running, many-threaded process holding large buffers.

Two defaults of glibc's allocator cost this exporter a quarter of its memory at
10,000 machines (measured in bench/, see docs/performance.md):

- The mmap threshold is dynamic: once a large block (the rendered exposition,
  ~10 MB) is freed, glibc raises the threshold to its size, so later blocks of
  that size come from the heap and their pages are kept after ``free``. A fixed
  threshold keeps every buffer over 1 MiB in its own mapping, returned to the
  system as soon as it is freed.
- Every thread that meets a locked arena gets its own (up to 8 per core), each
  holding on to freed memory. Python allocates small objects in its own arenas
  under the GIL, so extra malloc arenas buy this process nothing.

Both are applied with ``mallopt`` at start-up, before the worker threads exist,
unless the operator set the matching ``MALLOC_*`` environment variable (which
glibc reads itself). On other C libraries nothing is done.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Mapping

# From glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 1 << 20  # bytes
ARENA_MAX = 2

# (mallopt parameter, value, environment variable that overrides it)
SETTINGS: tuple[tuple[int, int, str], ...] = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
    (M_ARENA_MAX, ARENA_MAX, "MALLOC_ARENA_MAX"),
)


def tune_malloc(environ: Mapping[str, str]) -> dict[str, int]:
    """Apply the settings glibc accepted; returns them by environment-variable name."""
    if platform.libc_ver()[0] != "glibc":
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for parameter, value, variable in SETTINGS:
        if variable in environ:
            continue  # the operator's choice, already applied by glibc
        if mallopt(parameter, value) == 1:
            applied[variable] = value
    return applied
