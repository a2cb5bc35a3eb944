"""When each target is polled: evenly spread phases on a non-drifting grid. Pure.

Target ``i`` of ``n`` fires at ``epoch + i*interval/n + k*interval``; a target
that falls behind skips to its next grid point instead of piling up, so the
schedule never drifts and never bursts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from exporter.targets import TargetKey


def phases(keys: Sequence[TargetKey], interval: float) -> dict[TargetKey, float]:
    """Offsets within the interval, spread evenly in config order."""
    count = len(keys)
    return {key: index * interval / count for index, key in enumerate(keys)} if count else {}


def next_due(previous_due: float, interval: float, now: float) -> float:
    """The next grid point after ``previous_due`` that is not already in the past."""
    due = previous_due + interval
    if due < now:
        due += math.ceil((now - due) / interval) * interval
    return due


def first_due(epoch: float, phase: float, interval: float, now: float) -> float:
    """The first grid point of a phase at or after ``now``."""
    due = epoch + phase
    if due < now:
        due += math.ceil((now - due) / interval) * interval
    return due
