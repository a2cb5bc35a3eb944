"""Machine discovery: ``GET /v1/machines?ActorID=`` pages → the actor's machines. Pure.

Rules:
- page with ``ResultsLimit``/``ResultsOffset`` until an **empty** page: a short page
  does not prove the end (the server may cap the page size);
- a listing is *complete* only when every page up to the empty one succeeded; a
  failed or partial listing keeps the last complete one, so a machine disappears
  only after a complete, successful listing without it;
- kept kinds: ``discovery.machine_types`` (default the EV kinds);
- configured machines override the names of discovered ones and are added when
  the API does not list them;
- the ``machine`` label: configured name, else ``MachineName``, else the id, else
  the number; names that repeat within an actor get `` (id)`` appended so every
  machine keeps its own series.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from exporter.config import MachineConfig
from exporter.reading import BadPayload

__all__ = [
    "PAGE_SIZE",
    "KnownMachine",
    "MachineInfo",
    "PageResult",
    "merge_machines",
    "next_offset",
    "parse_machine_page",
    "settle_listing",
]

# What each page asks for; the server may answer fewer (its own cap).
PAGE_SIZE: Final = 1000
# Safety stop: a server that never answers an empty page must not page for ever.
MAX_PAGES: Final = 1000


@dataclass(frozen=True)
class MachineInfo:
    """One ``MachineInfo`` record, the fields the exporter uses."""

    machine_id: int
    actor_id: int | None = None
    name: str | None = None
    number: str | None = None
    machine_type: int | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    tz_offset_hours: float | None = None


@dataclass(frozen=True)
class KnownMachine:
    """A machine to poll: configured, discovered, or both."""

    machine_id: int | None
    number: str | None
    label: str
    info: MachineInfo | None = None  # None: configured only, never listed


@dataclass(frozen=True)
class PageResult:
    """One page's outcome: the records, or None if the request failed."""

    offset: int
    machines: tuple[MachineInfo, ...] | None


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _record(item: Mapping[str, object]) -> MachineInfo | None:
    machine_id = _int(item.get("MachineID"))
    if machine_id is None or machine_id <= 0:
        return None
    latitude, longitude = _float(item.get("GeoLatitude")), _float(item.get("GeoLongitude"))
    if latitude is not None and not -90 <= latitude <= 90:
        latitude = None
    if longitude is not None and not -180 <= longitude <= 180:
        longitude = None
    offset = _float(item.get("MachineTimeZoneOffset"))
    return MachineInfo(
        machine_id=machine_id,
        actor_id=_int(item.get("ActorID")),
        name=_text(item.get("MachineName")),
        number=_text(item.get("MachineNumber")),
        machine_type=_int(item.get("MachineTypeID")),
        city=_text(item.get("GeoCity")),
        latitude=latitude,
        longitude=longitude,
        tz_offset_hours=offset if offset is not None and abs(offset) <= 14 else None,
    )


def parse_machine_page(payload: object) -> tuple[MachineInfo, ...]:
    """One decoded ``/v1/machines`` answer → its records, in order. Pure.

    The answer must be a JSON array (else :class:`BadPayload`); records without a
    usable ``MachineID`` are skipped (they could not be polled anyway).
    """
    if not isinstance(payload, list):
        raise BadPayload(f"expected a JSON array, got {type(payload).__name__}")
    records = (_record(item) for item in payload if isinstance(item, Mapping))
    return tuple(r for r in records if r is not None)


def next_offset(offset: int, page: Sequence[object], pages_so_far: int) -> int | None:
    """The ResultsOffset of the next page, or None when the listing is over. Pure.

    Over means an empty page (or the MAX_PAGES safety stop, reported as incomplete
    by :func:`settle_listing`'s caller); a short page is *not* the end.
    """
    if not page or pages_so_far >= MAX_PAGES:
        return None
    return offset + len(page)


def settle_listing(
    previous: tuple[MachineInfo, ...] | None,
    pages: Sequence[PageResult],
    machine_types: Sequence[int],
) -> tuple[tuple[MachineInfo, ...] | None, bool]:
    """(the machine list to use, was this listing complete?). Pure.

    Complete: every page succeeded and the last one was empty. Otherwise the
    previous complete list stays (None if there never was one).
    """
    complete = bool(pages) and all(p.machines is not None for p in pages)
    complete = complete and not pages[-1].machines
    if not complete:
        return previous, False
    seen: set[int] = set()
    kept: list[MachineInfo] = []
    for page in pages:
        for machine in page.machines or ():
            if machine.machine_id in seen:
                continue  # a record that moved between pages while we listed
            seen.add(machine.machine_id)
            if not machine_types or machine.machine_type in machine_types:
                kept.append(machine)
    return tuple(kept), True


def _matches(configured: MachineConfig, info: MachineInfo) -> bool:
    if configured.id is not None:
        return configured.id == info.machine_id
    return configured.number is not None and configured.number == info.number


def merge_machines(
    configured: Sequence[MachineConfig], discovered: Sequence[MachineInfo] | None
) -> tuple[KnownMachine, ...]:
    """Discovered machines (API order) with configured names, then the configured
    machines the API did not list. Pure."""
    used: set[int] = set()
    merged: list[tuple[int | None, str | None, str | None, MachineInfo | None]] = []
    for info in discovered or ():
        match = next((i for i, c in enumerate(configured) if _matches(c, info)), None)
        name = configured[match].name if match is not None else None
        if match is not None:
            used.add(match)
        merged.append((info.machine_id, info.number, name or info.name, info))
    for index, machine in enumerate(configured):
        if index not in used:
            merged.append((machine.id, machine.number, machine.name, None))

    def base(entry: tuple[int | None, str | None, str | None, MachineInfo | None]) -> str:
        machine_id, number, name, _info = entry
        return name or (str(machine_id) if machine_id is not None else number or "")

    counts = Counter(base(e) for e in merged)
    result = []
    for entry in merged:
        label = base(entry)
        if counts[label] > 1 and entry[0] is not None and label != str(entry[0]):
            label = f"{label} ({entry[0]})"
        result.append(KnownMachine(entry[0], entry[1], label, entry[3]))
    return tuple(result)
