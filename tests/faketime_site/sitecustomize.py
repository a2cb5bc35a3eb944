"""Loaded at start-up by a Python process whose PYTHONPATH holds this folder: the
exporter run under libfaketime by tests/test_counters_e2e.py.

libfaketime 0.9.10 (Debian 12's) fakes the wall clock well, but with the monotonic
clock left alone (FAKETIME_DONT_FAKE_MONOTONIC=1, without which Python's thread
waits never end) it breaks ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)``,
which ``time.sleep`` calls since Python 3.11: EINVAL (libfaketime issue #426).
``time.sleep`` here waits on an Event instead, which libfaketime leaves alone.
Replaced before anything imports it (``sched`` binds it as its default delay).
"""

from __future__ import annotations

import threading
import time
from typing import SupportsIndex

_NEVER_SET = threading.Event()


def _sleep(seconds: float | SupportsIndex) -> None:
    _NEVER_SET.wait(max(0.0, float(seconds)))


time.sleep = _sleep
