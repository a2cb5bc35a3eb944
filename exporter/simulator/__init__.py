"""Stand-alone simulator of the Nayax Lynx ``evDashboard`` API for tests and demos."""

from exporter.simulator.faults import Fault, FaultKind, FaultSet
from exporter.simulator.fleet import Fleet, FleetSpec, Machine
from exporter.simulator.server import RecordedRequest, SimulatorServer

__all__ = [
    "Fault",
    "FaultKind",
    "FaultSet",
    "Fleet",
    "FleetSpec",
    "Machine",
    "RecordedRequest",
    "SimulatorServer",
]
