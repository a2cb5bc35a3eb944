"""Request kinds, one module per Lynx endpoint: each owns its request, its parsing
and its samples (see :mod:`exporter.kinds.base` for what a kind is).

- ``ev_dashboard``: ``GET /v1/actors/{id}/evDashboard`` per actor or machine and window
  (cumulative windows: ``cumulative``, one request per sub-period);
- ``machine_status``: ``GET /v1/machines/{id}/status`` per machine;
- ``discovery``: ``GET /v1/machines?ActorID=``, every page, per actor.
"""

from collections.abc import Mapping

from exporter.kinds.base import RequestKind
from exporter.kinds.cumulative import CumulativeDashboard
from exporter.kinds.discovery import DiscoveryKind
from exporter.kinds.ev_dashboard import EvDashboard
from exporter.kinds.machine_status import MachineStatusKind
from exporter.targets import DISCOVERY, EV_DASHBOARD, MACHINE_STATUS

__all__ = ["KINDS", "RequestKind", "all_kinds"]

# Every request kind by name (``TargetKey.kind``).
KINDS: Mapping[str, RequestKind] = {
    EV_DASHBOARD: EvDashboard(cumulative=CumulativeDashboard()),
    MACHINE_STATUS: MachineStatusKind(),
    DISCOVERY: DiscoveryKind(),
}


def all_kinds() -> Mapping[str, RequestKind]:
    """Every request kind by name."""
    return KINDS
