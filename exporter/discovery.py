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
  the number; names that repeat within an actor get `` (id)`` appended (and a
  counter if even that is taken: :func:`unique_labels`) so every machine keeps
  its own series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from exporter.config import MachineConfig
from exporter.reading import BadPayload
from exporter.upstream import (
    INT32_MAX,
    Dropped,
    Rejected,
    read_float,
    read_id,
    read_int,
    read_text,
)

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
_T = TypeVar("_T")


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


class _RecordReader:
    """Reads one record's fields through the upstream boundary, noting each value
    it had to drop (the record is kept without it)."""

    def __init__(self, item: Mapping[str, object]) -> None:
        self.item = item
        self.dropped: list[Dropped] = []

    def _kept(self, field: str, value: _T | Rejected | None) -> _T | None:
        if isinstance(value, Rejected):
            self.dropped.append(Dropped(field, value.reason))
            return None
        return value

    def text(self, field: str) -> str | None:
        return self._kept(field, read_text(self.item.get(field)))

    def id(self, field: str) -> int | None:
        return self._kept(field, read_id(self.item.get(field)))

    def number(self, field: str, bound: float) -> float | None:
        return self._kept(field, read_float(self.item.get(field), maximum=bound))

    def machine_type(self) -> int | None:
        raw = self.item.get("MachineTypeID")
        return self._kept("MachineTypeID", read_int(raw, minimum=0, maximum=INT32_MAX))


def _record(item: object) -> tuple[MachineInfo | None, list[Dropped]]:
    """One listed record (None when skipped: without a usable ``MachineID`` it could
    not be polled anyway) and what was dropped of it. Pure."""
    if not isinstance(item, Mapping):
        return None, [Dropped("MachineInfo", "not_an_object", record=True)]
    machine_id = read_id(item.get("MachineID"))
    if not isinstance(machine_id, int):
        reason = "no_id" if machine_id is None else machine_id.reason
        return None, [Dropped("MachineID", reason, record=True)]
    read = _RecordReader(item)
    info = MachineInfo(
        machine_id=machine_id,
        actor_id=read.id("ActorID"),
        name=read.text("MachineName"),
        number=read.text("MachineNumber"),
        machine_type=read.machine_type(),
        city=read.text("GeoCity"),
        latitude=read.number("GeoLatitude", 90.0),
        longitude=read.number("GeoLongitude", 180.0),
        tz_offset_hours=read.number("MachineTimeZoneOffset", 14.0),
    )
    return info, read.dropped


def parse_machine_page(payload: object) -> tuple[tuple[MachineInfo, ...], tuple[Dropped, ...]]:
    """One decoded ``/v1/machines`` answer → its records, in order, and what was
    skipped or dropped. Pure.

    The answer must be a JSON array (else :class:`BadPayload`); a record that cannot
    be used is skipped and noted, never the whole listing.
    """
    if not isinstance(payload, list):
        raise BadPayload(f"expected a JSON array, got {type(payload).__name__}")
    records: list[MachineInfo] = []
    dropped: list[Dropped] = []
    for item in payload:
        record, lost = _record(item)
        if record is not None:
            records.append(record)
        dropped.extend(lost)
    return tuple(records), tuple(dropped)


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


def unique_labels(
    bases: Sequence[str], ids: Sequence[int | None], numbers: Sequence[str | None]
) -> list[str]:
    """One ``machine`` label per machine, unique within its actor, never empty. Pure.

    A base (the machine's name, else its id or number) that no other machine shares
    is its label, and so is a base that is the machine's own id (ids are unique).
    The others get `` (<id, else number>)`` appended, and a further `` (2)``,
    `` (3)``... while that is taken too (a machine may be *named* ``dup (7013)``),
    so no two machines of an actor can ever publish the same series, whatever names
    the API sends."""
    counts = Counter(bases)
    claims = [
        bool(base) and (counts[base] == 1 or base == str(machine_id))
        for base, machine_id in zip(bases, ids, strict=True)
    ]
    taken = {base for base, claim in zip(bases, claims, strict=True) if claim}
    labels: list[str] = []
    for base, claim, machine_id, number in zip(bases, claims, ids, numbers, strict=True):
        if claim:
            labels.append(base)
            continue
        suffix = str(machine_id) if machine_id is not None else number or ""
        stem = f"{base} ({suffix})" if base else f"({suffix})"
        label, extra = stem, 2
        while label in taken:
            label, extra = f"{stem} ({extra})", extra + 1
        taken.add(label)
        labels.append(label)
    return labels


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

    bases = [
        name or (str(mid) if mid is not None else number or "") for mid, number, name, _ in merged
    ]
    ids = [machine_id for machine_id, _, _, _ in merged]
    labels = unique_labels(bases, ids, [number for _, number, _, _ in merged])
    result = [
        KnownMachine(entry[0], entry[1], label, entry[3])
        for entry, label in zip(merged, labels, strict=True)
    ]
    return tuple(result)
