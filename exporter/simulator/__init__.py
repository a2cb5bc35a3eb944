"""Stand-alone simulator of the Nayax Lynx API for tests and demos: ``evDashboard``,
``/v1/machines``, ``/v1/machines/{id}/status`` and the token exchange.

Conformance with the vendor's OpenAPI document (tests/simulator/test_conformance.py
checks real answers against its schemas, copied in tests/simulator/lynx_schemas.json):

- ``MachineInfo``, ``MachineStatusInfo`` and ``EvMeterDashBoard`` carry only fields
  the document has, with its types, nullability and enums: ``MachineTypeID`` codes of
  its ``MachineTypeIDEnum`` (555007 and 30000526 for chargers; drinks, parking, car
  wash and laundry codes for the other kinds), ``GeoCountry`` an int32 country id
  (ISO 3166-1 numeric: the vendor's own ids are not published).
- Every error of the API routes has the vendor's body (:mod:`.vendor`); only the
  control API (``/_sim/``) answers ``{"error": ...}``.
- Where the document is vague or doubtful, the simulator stays realistic:
  timestamps carry no zone, some with milliseconds, some without, as the vendor's
  recorded answers (:mod:`.machines`); ``TotalEnergyConsumption`` has decimals
  although the document types it int32 (an integer cannot hold a realistic kWh
  figure; the exporter reads any number).

Modules, each importing only those before it: ``replies`` (answer values), ``clock``
(the simulator's settable wall clock), ``history`` (a machine's transactions),
``fleet`` (the model), ``faults``, ``vendor`` (errors, rules, tokens), ``context``
(what a route is given), ``machines`` and ``routes`` (the API), ``control``
(``/_sim/``), ``server`` (HTTP transport).
"""

from exporter.simulator.clock import SimClock
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
    "SimClock",
    "SimulatorServer",
]
