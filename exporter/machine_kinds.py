"""The ``machine_status`` and ``discovery`` request kinds (see exporter/kinds.py).

- ``machine_status``: ``GET /v1/machines/{MachineID}/status`` for one machine; the
  answer becomes a :class:`MachineStatus` (exporter/machine_status.py).
- ``discovery``: ``GET /v1/machines?ActorID=`` for one actor, every page until an
  empty one (:func:`fetch_pages`); the answer becomes a :class:`Discovery`, the
  kept machines of a *complete* listing. A failed page fails the whole poll, so
  the store keeps the previous listing (a machine disappears only after a
  complete, successful listing without it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from exporter.client import Answer
from exporter.config import Config, Secret
from exporter.discovery import (
    PAGE_SIZE,
    MachineInfo,
    PageResult,
    next_offset,
    parse_machine_page,
    settle_listing,
)
from exporter.kinds import BadPayload, Request
from exporter.machine_status import MachineStatus, parse_status, zone_for
from exporter.reading import Problem
from exporter.targets import DISCOVERY, MACHINE_STATUS, Target
from exporter.upstream import Dropped

__all__ = [
    "DISCOVERY",
    "MACHINE_KINDS",
    "MACHINE_STATUS",
    "Discovery",
    "DiscoveryKind",
    "MachineStatusKind",
    "fetch_pages",
]

GetJson = Callable[[str, Mapping[str, str], Secret], Answer]
# More machines than any operator has: a listing that keeps going is refused.
MAX_RECORDS = 20_000


@dataclass(frozen=True)
class Discovery:
    """A complete listing's kept machines, in API order."""

    machines: tuple[MachineInfo, ...]
    problems: tuple[Problem, ...] = ()
    # Records skipped and values dropped while reading the pages: counted per poll,
    # not part of what the listing is (two listings of the same machines are equal).
    dropped: tuple[Dropped, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class MachineStatusKind:
    name: str = MACHINE_STATUS

    def request(self, target: Target, now: datetime) -> Request:
        """Pure."""
        return Request(f"/v1/machines/{target.machine_id}/status", {})

    def parse(self, payload: object, target: Target, config: Config) -> MachineStatus:
        offset = None if target.info is None else target.info.tz_offset_hours
        zone = zone_for(config.machine_status.timestamps, offset)
        return parse_status(payload, zone=zone, now=time.time())


@dataclass(frozen=True)
class DiscoveryKind:
    name: str = DISCOVERY

    def request(self, target: Target, now: datetime) -> Request:
        """Pure."""
        return Request("/v1/machines", {"ActorID": str(target.actor_id)}, paged=True)

    def parse(self, payload: object, target: Target, config: Config) -> Discovery:
        """Pure: ``payload`` is the list of page payloads :func:`fetch_pages` read."""
        if not isinstance(payload, list):
            raise BadPayload("expected the pages of a listing")
        pages, offset = [], 0
        dropped: list[Dropped] = []
        for page_payload in payload:
            records, lost = parse_machine_page(page_payload)
            pages.append(PageResult(offset, records))
            dropped.extend(lost)
            # The offset counts what the server sent: skipped records held a place too.
            offset += len(page_payload) if isinstance(page_payload, list) else len(records)
        machines, complete = settle_listing(None, pages, config.discovery.machine_types)
        ended = bool(payload) and payload[-1] == []  # skipped records leave a page non-empty
        if not complete or not ended or machines is None:
            raise BadPayload("the listing did not end with an empty page")
        return Discovery(machines, dropped=tuple(dropped))


def fetch_pages(
    get_json: GetJson, path: str, params: Mapping[str, str], credential: Secret
) -> Answer:
    """Every page of a ``ResultsLimit``/``ResultsOffset`` listing until an empty one.

    The answer's payload is the list of page payloads; attempts add up, duration
    is the whole listing's. A failed page raises (the caller keeps the last list).
    A server that ignores the offset (the same page again) or never ends (more
    than MAX_RECORDS records) stops the listing early: it is then incomplete, and
    :meth:`DiscoveryKind.parse` refuses it.
    """
    started = time.monotonic()
    pages: list[object] = []
    attempts, offset, records = 0, 0, 0
    status = 200
    while True:
        page_params = {**params, "ResultsLimit": str(PAGE_SIZE), "ResultsOffset": str(offset)}
        answer = get_json(path, page_params, credential)
        attempts += answer.attempts
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
    return Answer(pages, status, attempts, time.monotonic() - started)


MACHINE_KINDS: Mapping[str, MachineStatusKind | DiscoveryKind] = {
    MACHINE_STATUS: MachineStatusKind(),
    DISCOVERY: DiscoveryKind(),
}
