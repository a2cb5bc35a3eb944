"""Request kinds: what the poller asks the Lynx API for, and how it reads the answer.

This is the extension point for new endpoints. A kind is a small object with

- ``name``: the kind's id, also ``TargetKey.kind`` of every target it polls;
- ``request(target, now)``: *what to ask* — a :class:`Request` (path and query
  parameters; the client adds the base URL, the token, retries and pacing);
- ``parse(payload, target, config)``: *how to read the answer* — a pure function
  from the decoded JSON to a result (anything with a ``problems`` sequence, see
  :class:`exporter.store.Result`); it raises :class:`BadPayload` when the answer
  as a whole is unusable.

*Where the result goes*: the poller hands every outcome to the store once; the
result becomes ``TargetState.reading`` of the target's key, with up/down and
error reasons decided the same way for every kind (``store.apply_outcome``).
``samples.state_samples`` turns a state into series by the target's kind. A kind
whose result changes *what* is polled (discovery) watches its outcomes through
the poller's ``on_commit`` hook (it receives every batch's transitions) and asks
the exporter to re-plan.

To add a kind (e.g. ``machine_status``, ``discovery``):

1. write the kind (``name``, ``request``, ``parse``) and add it to :data:`KINDS`
   (or, like the machine kinds, to :func:`all_kinds`);
2. build its targets (``Target`` with ``TargetKey(kind=...)``) next to
   ``targets.build_targets`` so they go through the same shard filter;
3. render its results in ``samples.state_samples`` (by ``state.target.kind``).

No other change to the poller: scheduling, deferral after a 429, skip-not-queue,
reload and shutdown are the same for every kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from exporter.config import Config
from exporter.lynx.upstream import Dropped
from exporter.targets import Target

__all__ = ["BadPayload", "Problem", "Request", "RequestKind", "Result"]


class BadPayload(ValueError):
    """The answer as a whole is unusable (not JSON, not an object)."""


@dataclass(frozen=True)
class Problem:
    """A field we could not use. ``reason`` is a poll-error reason label."""

    reason: str  # "bad_payload" | "unknown_unit"
    field: str
    detail: str


class Result(Protocol):
    """What a request kind's parse function returns (e.g. a :class:`Reading`):
    anything that says which of its fields were unusable (``problems``: the target
    is down) and which values it read as absent (``dropped``: only counted)."""

    @property
    def problems(self) -> Sequence[Problem]: ...

    @property
    def dropped(self) -> Sequence[Dropped]: ...


@dataclass(frozen=True)
class Request:
    """One GET: ``path`` below ``lynx.base_url`` and its query parameters."""

    path: str
    params: Mapping[str, str]
    # A ResultsLimit/ResultsOffset listing: the poller fetches every page until an
    # empty one and hands parse the list of pages (exporter/machine_kinds.py).
    paged: bool = False


class RequestKind(Protocol):
    @property
    def name(self) -> str: ...

    def request(self, target: Target, now: datetime) -> Request:
        """Pure: what to ask for ``target`` at ``now``."""
        ...

    def parse(self, payload: object, target: Target, config: Config) -> Result:
        """Pure: the answer read; raises :class:`BadPayload` if unusable."""
        ...
