"""``--excluded FILE``: the windows an operator declares excluded (maintenance,
grid outages), fleet-wide, per actor or per charger.

    excluded:
      - start: 2024-03-10T02:00:00Z     # RFC 3339, with Z or an offset
        end: 2024-03-10T06:30:00+01:00  # exclusive
        reason: utility grid outage, notice 4711
        actor_id: 2001492652            # optional: only this actor's chargers
        machine_id: 942516              # optional (with actor_id): only this charger

A minute is inside a window when its start instant is in [start, end). Every
problem is reported at once with its key path (``excluded[3].end: ...``), in the
dialect of the other config files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from exporter.config.validate import ConfigError, Validator
from exporter.config.yamlload import load_yaml
from exporter.report.charger import Charger
from exporter.report.periods import Minutes, merge, minute_ceiling
from exporter.report.textfile import read_text

MAX_WINDOWS = 100_000  # each distinct window costs Prometheus queries
_WINDOW_KEYS = ("start", "end", "reason", "actor_id", "machine_id")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_INSTANT_HINT = "an RFC 3339 timestamp with Z or an offset, e.g. 2024-03-10T02:00:00Z"


@dataclass(frozen=True)
class ExcludedWindow:
    start: float  # epoch seconds, inclusive
    end: float  # epoch seconds, exclusive
    reason: str
    actor_id: str | None  # None: every actor
    machine_id: str | None  # None: every machine of the actor (or of the fleet)
    key: str  # where it was declared: ``excluded[3]``

    @property
    def minutes(self) -> Minutes | None:
        """The minutes whose start instant lies in the window; None if none does."""
        first, stop = minute_ceiling(self.start), minute_ceiling(self.end)
        return Minutes(first, stop) if first < stop else None

    def applies_to(self, charger: Charger) -> bool:
        if self.actor_id is not None and self.actor_id != charger.actor_id:
            return False
        return self.machine_id is None or self.machine_id == charger.machine_id


def load_excluded(path: Path) -> tuple[ExcludedWindow, ...]:
    """Read and validate the file; raises ConfigError naming every problem."""
    return parse_excluded(read_text(path))


def parse_excluded(text: str) -> tuple[ExcludedWindow, ...]:
    """Validate excluded-windows YAML text. Pure."""
    v = Validator()
    raw = v.mapping(load_yaml(text), "", ("excluded",))
    items = v.sequence(raw.get("excluded"), "excluded")
    if len(items) > MAX_WINDOWS:
        raise ConfigError([f"excluded: {len(items)} windows; at most {MAX_WINDOWS} are allowed"])
    windows = [_window(v, item, f"excluded[{index}]") for index, item in enumerate(items)]
    if v.errors:
        raise ConfigError(v.errors)
    return tuple(w for w in windows if w is not None)


def _window(v: Validator, node: object, path: str) -> ExcludedWindow | None:
    if not isinstance(node, dict):
        v.error(path, "must be a mapping with start, end and reason")
        return None
    raw = v.mapping(node, path, _WINDOW_KEYS)
    for key in ("start", "end", "reason"):
        if raw.get(key) is None:
            v.error(f"{path}.{key}", "is required")
    start = _instant(v, raw.get("start"), f"{path}.start")
    end = _instant(v, raw.get("end"), f"{path}.end")
    reason = v.string(raw.get("reason"), f"{path}.reason")
    actor_id = v.string(raw.get("actor_id"), f"{path}.actor_id")
    machine_id = v.string(raw.get("machine_id"), f"{path}.machine_id")
    if machine_id is not None and raw.get("actor_id") is None:
        v.error(f"{path}.machine_id", "needs actor_id too: a charger is actor_id + machine_id")
    if start is not None and end is not None and end <= start:
        v.error(f"{path}.end", "must be after start")
    if start is None or end is None or reason is None or v.errors_for(f"{path}."):
        return None
    return ExcludedWindow(start, end, reason, actor_id, machine_id, path)


def _instant(v: Validator, node: object, path: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (YAML may have read it as a datetime)."""
    if node is None:
        return None
    if isinstance(node, datetime):
        moment = node
    elif isinstance(node, date) or not isinstance(node, str) or not _RFC3339.fullmatch(node):
        v.error(path, f"must be {_INSTANT_HINT}")
        return None
    else:
        try:
            moment = datetime.fromisoformat(node.upper().replace(" ", "T"))
        except ValueError:
            v.error(path, f"not a valid date or time; must be {_INSTANT_HINT}")
            return None
    if moment.tzinfo is None:
        v.error(path, "has no UTC offset; add Z (UTC) or one like +01:00")
        return None
    if moment.astimezone(UTC).year < 1970:
        v.error(path, "must not be before 1970")
        return None
    return moment.timestamp()


def charger_windows(windows: Iterable[ExcludedWindow], charger: Charger) -> tuple[Minutes, ...]:
    """The minutes excluded for one charger, merged: a minute in two overlapping
    windows (fleet-wide and its own) is excluded once. Pure."""
    ranges = [w.minutes for w in windows if w.applies_to(charger)]
    return merge([r for r in ranges if r is not None])


def unmatched(
    windows: Iterable[ExcludedWindow], chargers: Iterable[Charger]
) -> tuple[ExcludedWindow, ...]:
    """Windows for an actor or charger that the report does not contain (a typo?). Pure."""
    known = list(chargers)
    actors = {c.actor_id for c in known}
    pairs = {(c.actor_id, c.machine_id) for c in known}
    found: list[ExcludedWindow] = []
    for window in windows:
        if window.actor_id is None:
            continue
        if window.machine_id is None:
            missing = window.actor_id not in actors
        else:
            missing = (window.actor_id, window.machine_id) not in pairs
        if missing:
            found.append(window)
    return tuple(found)
