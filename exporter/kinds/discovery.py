"""The ``discovery`` request kind (see exporter/kinds/base.py).

- ``discovery``: ``GET /v1/machines?ActorID=`` for one actor, every page until an
  empty one (:func:`fetch_pages`); the answer becomes a :class:`Discovery`, the
  kept machines of a *complete* listing. A failed page fails the whole poll, so
  the store keeps the previous listing (a machine disappears only after a
  complete, successful listing without it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeVar

from exporter.config import Config, Secret
from exporter.kinds.base import Family, GetJson, Problem, Result, Sample
from exporter.lynx.client import Answer
from exporter.lynx.errors import BadPayloadError
from exporter.lynx.upstream import (
    INT32_MAX,
    Dropped,
    Rejected,
    read_float,
    read_id,
    read_int,
    read_text,
)
from exporter.targets import DISCOVERY, MachineInfo, Target

__all__ = [
    "DISCOVERED_MACHINES",
    "MAX_PAGES",
    "MAX_RECORDS",
    "PAGE_SIZE",
    "Discovery",
    "DiscoveryKind",
    "PageResult",
    "fetch_pages",
    "next_offset",
    "parse_machine_page",
    "read_listing",
    "settle_listing",
]

# What each page asks for; the server may answer fewer (its own cap).
PAGE_SIZE: Final = 1000
# Safety stop: a server that never answers an empty page must not page for ever.
MAX_PAGES: Final = 1000
_T = TypeVar("_T")


# More machines than any operator has: a listing that keeps going is refused.
MAX_RECORDS = 20_000


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

    The answer must be a JSON array (else :class:`BadPayloadError`); a record that cannot
    be used is skipped and noted, never the whole listing.
    """
    if not isinstance(payload, list):
        raise BadPayloadError(f"expected a JSON array, got {type(payload).__name__}")
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


@dataclass(frozen=True, slots=True)
class Discovery:
    """A complete listing's kept machines, in API order."""

    machines: tuple[MachineInfo, ...]
    problems: tuple[Problem, ...] = ()
    notices: tuple[Problem, ...] = ()
    # Records skipped and values dropped while reading the pages: counted per poll,
    # not part of what the listing is (two listings of the same machines are equal).
    dropped: tuple[Dropped, ...] = field(default=(), compare=False)


def fetch_pages(
    get_json: GetJson, path: str, params: Mapping[str, str], credential: Secret
) -> Answer:
    """Every page of a ``ResultsLimit``/``ResultsOffset`` listing until an empty one.

    The answer's payload is the list of page payloads; attempts and durations add
    up. A failed page raises (the caller keeps the last list).
    A server that ignores the offset (the same page again) or never ends (more
    than MAX_RECORDS records) stops the listing early: it is then incomplete, and
    :meth:`DiscoveryKind.parse` refuses it.
    """
    pages: list[object] = []
    attempts, offset, records, duration = 0, 0, 0, 0.0
    status = 200
    while True:
        page_params = {**params, "ResultsLimit": str(PAGE_SIZE), "ResultsOffset": str(offset)}
        answer = get_json(path, page_params, credential)
        attempts += answer.attempts
        duration += answer.duration
        status = answer.status
        page = answer.payload
        if not isinstance(page, list) or (pages and page and page == pages[-1]):
            pages.append(page)
            break  # not a listing, or the same page again: parse reports it
        pages.append(page)
        records += len(page)
        following = next_offset(offset, page, len(pages))
        if following is None or records > MAX_RECORDS:
            break
        offset = following
    return Answer(pages, status, attempts, duration)


def read_listing(payload: object, machine_types: Sequence[int]) -> Discovery:
    """Pure: the pages :func:`fetch_pages` read → the listing's kept machines."""
    if not isinstance(payload, list):
        raise BadPayloadError("expected the pages of a listing")
    pages, offset = [], 0
    dropped: list[Dropped] = []
    for page_payload in payload:
        records, lost = parse_machine_page(page_payload)
        pages.append(PageResult(offset, records))
        dropped.extend(lost)
        # The offset counts what the server sent: skipped records held a place too.
        offset += len(page_payload) if isinstance(page_payload, list) else len(records)
    machines, complete = settle_listing(None, pages, machine_types)
    ended = bool(payload) and payload[-1] == []  # skipped records leave a page non-empty
    if not complete or not ended or machines is None:
        raise BadPayloadError("the listing did not end with an empty page")
    return Discovery(machines, dropped=tuple(dropped))


# --- the series and the kind ---------------------------------------------------------

DISCOVERED_MACHINES = Family(
    "nayax_ev_discovered_machines",
    "Machines of the actor kept from its last complete GET /v1/machines listing.",
    ("actor_id", "actor"),
)


@dataclass(frozen=True)
class DiscoveryKind:
    """``GET /v1/machines?ActorID=`` for one actor, every page."""

    name: str = DISCOVERY
    families: tuple[Family, ...] = (DISCOVERED_MACHINES,)

    def fetch(self, get_json: GetJson, target: Target, now: datetime) -> Answer:
        return fetch_pages(
            get_json, "/v1/machines", {"ActorID": str(target.actor_id)}, target.token
        )

    def parse(self, payload: object, target: Target, config: Config, now: float) -> Discovery:
        """Pure: ``payload`` is the list of page payloads :func:`fetch_pages` read."""
        return read_listing(payload, config.discovery.machine_types)

    def samples(self, target: Target, reading: Result) -> Iterator[Sample]:
        """Pure: how many machines the last complete listing kept."""
        assert isinstance(reading, Discovery)  # what this kind's parse returns
        labels = (("actor_id", str(target.actor_id)), ("actor", target.actor))
        yield Sample(DISCOVERED_MACHINES, labels, float(len(reading.machines)))
