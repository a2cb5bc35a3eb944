"""What a route is given: the request, and the running simulator seen through the
few things routes read or steer (Protocols :class:`SimulatorServer` fulfils).

The routes depend on these, not on the server, so that the server can import the
routes without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter.simulator.clock import SimClock
from exporter.simulator.faults import Fault
from exporter.simulator.fleet import Fleet
from exporter.simulator.replies import Reply
from exporter.simulator.vendor import TokenIssuer

__all__ = ["ApiRequest", "Payload", "Simulated", "Steered"]

# A route's verdict: an error reply, or the JSON document plus the fault to apply.
Payload = Reply | tuple[object, Fault | None]


@dataclass(frozen=True)
class ApiRequest:
    method: str
    query: Mapping[str, str]  # keys lower-cased: .NET binds them case-insensitively
    authorization: str | None
    wall: float


class Simulated(Protocol):
    """What the API routes read: the fleet, the vendor's knobs, tokens and faults."""

    fleet: Fleet
    issuer: TokenIssuer
    strict: bool  # evDashboard's rule (exporter.simulator.vendor.dashboard_rule)
    time_periods: frozenset[int] | None  # None: every TimePeriod code accepted
    timestamps: str  # convention of /status timestamps: machines.TIMESTAMP_CONVENTIONS
    page_cap: int  # /v1/machines answers at most this many records

    def authorize(self, authorization: str | None, actor_id: int | None) -> int:
        """0 if allowed, else 401 (no or unknown token) or 403 (another actor's)."""
        ...

    def take_fault(
        self, actor_id: int, machine_keys: frozenset[str], endpoint: str
    ) -> Fault | None:
        """The fault this request meets (consuming one use of a counted fault)."""
        ...


class Steered(Simulated, Protocol):
    """What the control API (``/_sim/``) also changes and reports."""

    latency: float
    clock: SimClock  # the wall clock of the API's answers

    def add_fault(self, fault: Fault) -> None: ...

    def faults(self) -> list[Fault]: ...

    def clear_faults(self) -> None: ...

    def request_log(self) -> list[dict[str, object]]: ...

    def clear_requests(self) -> None: ...
