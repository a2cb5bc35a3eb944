"""Fault-injection switches for the simulator.

A :class:`Fault` describes one misbehaviour; a :class:`FaultSet` holds the active ones
(thread-safe) and decides which, if any, applies to an incoming request. The payload
mutations are pure functions so the server only deals with transport.
"""

from __future__ import annotations

import copy
import enum
import itertools
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Final

from exporter.config.validate import Validator

__all__ = [
    "ENDPOINTS",
    "HANG_STAGES",
    "MACHINE_NUMERIC_FIELDS",
    "OPERATOR_FIELDS",
    "Fault",
    "FaultKind",
    "FaultSet",
    "echo_authorization",
    "mutate_document",
    "mutate_payload",
    "patch_document",
]


class FaultKind(enum.StrEnum):
    STATUS = "status"
    HANG = "hang"
    RESET = "reset"
    TRUNCATED_JSON = "truncated_json"
    HTML_200 = "html_200"
    JSON_ARRAY = "json_array"
    MISSING_OPERATOR = "missing_operator"
    MISSING_MACHINE = "missing_machine"
    NULLS = "nulls"
    NUMERIC_STRINGS = "numeric_strings"
    NEGATIVE = "negative"
    HUGE = "huge"
    NAN = "nan"
    UNKNOWN_UNIT = "unknown_unit"
    EXTRA_FIELDS = "extra_fields"
    PATCH = "patch"


OPERATOR_FIELDS: Final = (
    "TotalOperatorMachines",
    "TotalCommunicatingMachines",
    "TotalActiveMachines",
    "TotalSilentMachines",
)
MACHINE_NUMERIC_FIELDS: Final = (
    "NumberOfChargingSessions",
    "NumberOfTransactionsForTimeInterval",
    "SalesAmountForTimeInterval",
    "TotalChargingSessionsDuration",
    "TotalEnergyConsumption",
)


# Where a HANG stops: before anything is sent ("start"), after the headers and half
# the body ("body"), or sending the body in pieces ``seconds`` apart ("trickle": each
# gap shorter than a client's read timeout, the whole answer far longer).
HANG_STAGES: Final = ("start", "body", "trickle")
# Which API a fault may hit: evDashboard, the machine list, a machine's status.
ENDPOINTS: Final = ("dashboard", "machines", "status")
TRICKLE_PIECES: Final = 8


@dataclass(frozen=True)
class Fault:
    """One fault. ``machine``: None = any request, "" = only requests without a machine
    filter, otherwise a machine id (as a string) or machine number.

    ``retry_after_in`` (STATUS): send ``Retry-After`` as an HTTP-date this many seconds
    after the answer (``retry_after`` sends a fixed value). ``hang_at`` (HANG): see
    HANG_STAGES. ``echo_authorization``: the answer repeats the request's Authorization
    header, as servers that reflect their input do (secret-leak tests). ``pad_bytes``
    (JSON-shaping kinds): an extra field of that many bytes (oversized answers)."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 30.0
    actor_id: int | None = None
    machine: str | None = None
    remaining: int | None = None
    probability: float = 1.0
    retry_after_in: float | None = None
    hang_at: str = "start"
    echo_authorization: bool = False
    pad_bytes: int = 0
    endpoint: str | None = None  # None = every endpoint, else one of ENDPOINTS
    # PATCH: fields merged (deeply) into the answer, or into every record of a
    # listing; ``records``: per MachineID (as text), fields merged into that record.
    patch: Mapping[str, object] | None = field(default=None, hash=False)
    records: Mapping[str, Mapping[str, object]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        # Accept the plain string value too (JSON, CLI), but store the enum.
        object.__setattr__(self, "kind", FaultKind(self.kind))
        # 1xx/204/304 cannot carry the body we send, so keep to codes that can.
        if not 200 <= self.status <= 599 or self.status in (204, 304):
            raise ValueError("status must be in [200, 599] and not 204/304")
        if self.retry_after is not None and any(c in self.retry_after for c in "\r\n"):
            raise ValueError("retry_after must be a single header line")
        if not self.seconds >= 0:
            raise ValueError("seconds must be >= 0")
        if self.remaining is not None and self.remaining < 1:
            raise ValueError("remaining must be >= 1 (or null for a persistent fault)")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be in [0, 1]")
        if self.retry_after_in is not None:
            if self.retry_after is not None:
                raise ValueError("set retry_after or retry_after_in, not both")
            if not 0.0 <= self.retry_after_in <= 10 * 365 * 86400:
                raise ValueError("retry_after_in must be in [0, ten years]")
        if self.hang_at not in HANG_STAGES:
            raise ValueError(f"hang_at must be one of {', '.join(HANG_STAGES)}")
        if not 0 <= self.pad_bytes <= 64 << 20:
            raise ValueError("pad_bytes must be in [0, 64 MiB]")
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)} or null")
        patches = self.patch is not None or self.records is not None
        if (self.kind is FaultKind.PATCH) != patches:
            raise ValueError("patch or records is required for, and only for, the patch kind")

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """Build a Fault from decoded JSON; ValueError listing every problem, each
        with its key (the config files' validator: exporter/validate.py)."""
        if not isinstance(data, Mapping):
            raise ValueError("a fault must be a JSON object")
        v = Validator()
        raw = v.mapping(dict(data), "", tuple(f.name for f in fields(cls)))
        kind = raw.get("kind")
        if kind is None:
            v.error("kind", "is required")
        elif kind not in tuple(FaultKind):
            v.error("kind", f"unknown fault kind {kind!r}; one of {', '.join(FaultKind)}")
        machine = raw.get("machine")
        if isinstance(machine, int) and not isinstance(machine, bool):
            machine = str(machine)  # a machine id sent as a JSON number
        elif machine is not None and not isinstance(machine, str):
            v.error("machine", "must be a string, a machine id or null")
        values = {
            "status": v.integer(raw.get("status"), "status", allow_text=False),
            "retry_after": v.string(raw.get("retry_after"), "retry_after"),
            "seconds": v.number(raw.get("seconds"), "seconds"),
            "actor_id": v.integer(raw.get("actor_id"), "actor_id", allow_text=False),
            "remaining": v.integer(raw.get("remaining"), "remaining", allow_text=False),
            "probability": v.number(raw.get("probability"), "probability", maximum=1.0),
            "retry_after_in": v.number(raw.get("retry_after_in"), "retry_after_in"),
            "hang_at": v.choice(raw.get("hang_at"), "hang_at", HANG_STAGES),
            "echo_authorization": v.boolean(raw.get("echo_authorization"), "echo_authorization"),
            "pad_bytes": v.integer(raw.get("pad_bytes"), "pad_bytes", allow_text=False),
            "endpoint": v.choice(raw.get("endpoint"), "endpoint", ENDPOINTS),
        }
        patch, records = raw.get("patch"), raw.get("records")
        if patch is not None and not isinstance(patch, Mapping):
            v.error("patch", "must be a JSON object")
        if records is not None and not (
            isinstance(records, Mapping) and all(isinstance(r, Mapping) for r in records.values())
        ):
            v.error("records", "must map MachineIDs to JSON objects")
        if v.errors:
            raise ValueError("; ".join(v.errors))
        given: dict[str, object] = {k: value for k, value in values.items() if value is not None}
        if isinstance(patch, Mapping):
            given["patch"] = dict(patch)
        if isinstance(records, Mapping):
            given["records"] = {str(k): dict(r) for k, r in records.items()}
        return cls(kind=FaultKind(kind), machine=machine, **given)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["kind"] = str(self.kind)
        return out

    def matches(
        self, actor_id: int, machine_keys: frozenset[str], endpoint: str = "dashboard"
    ) -> bool:
        """Does this fault's scope cover a request for ``actor_id``?

        ``machine_keys`` identifies the request's machine filter (its id as a string
        and its number), empty when the request has none; ``endpoint``: ENDPOINTS.
        """
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        if self.actor_id is not None and self.actor_id != actor_id:
            return False
        if self.machine is None:
            return True
        if self.machine == "":
            return not machine_keys
        return self.machine in machine_keys


class _Entry:
    """A fault plus its live countdown (Fault itself is immutable)."""

    __slots__ = ("fault", "remaining", "seq")

    def __init__(self, fault: Fault, seq: int) -> None:
        self.fault = fault
        self.remaining = fault.remaining
        self.seq = seq


class FaultSet:
    """The active faults; the first matching one (in insertion order) wins."""

    def __init__(self, seed: int = 1) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self._seq = itertools.count()
        # Seeded so that probabilistic soak runs are reproducible.
        self._rng = random.Random(seed)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._entries.append(_Entry(fault, next(self._seq)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def active(self) -> list[Fault]:
        """The active faults, with ``remaining`` showing the live countdown."""
        with self._lock:
            return [replace(e.fault, remaining=e.remaining) for e in self._entries]

    def take(
        self, actor_id: int, machine_keys: frozenset[str], endpoint: str = "dashboard"
    ) -> Fault | None:
        """The fault to apply to this request, consuming one use of a counted fault."""
        with self._lock:
            for entry in self._entries:
                fault = entry.fault
                if not fault.matches(actor_id, machine_keys, endpoint):
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self._entries.remove(entry)
                return fault
        return None


# -- payload mutations ----------------------------------------------------------------


def _map_numbers(payload: dict[str, object], fn: Callable[[int | float], object]) -> None:
    """Apply ``fn`` in place to every numeric field of a (copied) dashboard payload."""
    for section, names in (
        ("OperatorDashboard", OPERATOR_FIELDS),
        ("MachineDashboard", MACHINE_NUMERIC_FIELDS),
    ):
        block = payload.get(section)
        if isinstance(block, dict):
            for name in names:
                value = block.get(name)
                if isinstance(value, int | float):
                    block[name] = fn(value)
    period = payload.get("TimePeriod")
    if isinstance(period, int | float):
        payload["TimePeriod"] = fn(period)


def _negate(value: int | float) -> int | float:
    return -value if value != 0 else -1


def mutate_payload(kind: FaultKind, payload: object) -> object:
    """The JSON document to send instead of ``payload`` for a body-shaping fault.

    Kinds that are not about the JSON document (STATUS, HANG, RESET, TRUNCATED_JSON,
    HTML_200) return an unchanged copy; the server handles those at transport level.
    Documents other than an evDashboard answer (machine lists, machine status) get
    the same kinds applied to their own fields (:func:`mutate_document`).
    """
    if not isinstance(payload, Mapping) or "OperatorDashboard" not in payload:
        return mutate_document(kind, payload)
    doc: dict[str, object] = copy.deepcopy(dict(payload))
    match kind:
        case FaultKind.JSON_ARRAY:
            return [doc]
        case FaultKind.MISSING_OPERATOR:
            doc.pop("OperatorDashboard", None)
        case FaultKind.MISSING_MACHINE:
            doc.pop("MachineDashboard", None)
        case FaultKind.NULLS:
            _map_numbers(doc, lambda _v: None)
            doc["TimePeriod"] = None
        case FaultKind.NUMERIC_STRINGS:
            _map_numbers(doc, str)
        case FaultKind.NEGATIVE:
            _map_numbers(doc, _negate)
        case FaultKind.HUGE:
            _map_numbers(doc, lambda _v: 1e308)
        case FaultKind.NAN:
            specials = itertools.cycle((float("nan"), float("inf"), float("-inf")))
            _map_numbers(doc, lambda _v: next(specials))
        case FaultKind.UNKNOWN_UNIT:
            machine = doc.get("MachineDashboard")
            if isinstance(machine, dict):
                machine["UnitOfMeasureSymbol"] = "furlongs"
                machine["UnitOfMeasure"] = "Furlong"
        case FaultKind.EXTRA_FIELDS:
            doc["ApiVersion"] = "9.9"
            doc["Links"] = [{"rel": "self", "href": "/v1/actors/0/evDashboard"}]
            operator = doc.get("OperatorDashboard")
            if isinstance(operator, dict):
                operator["TotalRetiredMachines"] = 0
                operator["Region"] = {"Name": "EU", "Code": 1}
            machine = doc.get("MachineDashboard")
            if isinstance(machine, dict):
                machine["CurrencyCode"] = "EUR"
                machine["PeakPowerKw"] = 150.5
                machine["Tags"] = ["dc", "fast"]
        case _:
            pass
    return doc


# Fields that identify a record: mutations leave them alone so the answer still
# names the machine it is about.
_ID_FIELDS: Final = frozenset({"MachineID", "ActorID", "OperatorActorID"})


def _mutate_record(kind: FaultKind, record: dict[str, object]) -> None:
    """Apply a JSON-shaping fault in place to one flat machine record."""
    for key, value in list(record.items()):
        if key in _ID_FIELDS:
            continue
        if kind is FaultKind.NULLS:
            record[key] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            continue
        elif kind is FaultKind.NUMERIC_STRINGS:
            record[key] = str(value)
        elif kind is FaultKind.NEGATIVE:
            record[key] = _negate(value)
        elif kind is FaultKind.HUGE:
            record[key] = 1e308
        elif kind is FaultKind.NAN:
            record[key] = float("nan")
    if kind is FaultKind.EXTRA_FIELDS:
        record["ApiVersion"] = "9.9"
        record["Tags"] = ["dc", "fast"]


def mutate_document(kind: FaultKind, payload: object) -> object:
    """:func:`mutate_payload` for a machine list (array) or machine status (object).

    JSON_ARRAY turns an object into a one-element array and an array into an object;
    the dashboard-only kinds (MISSING_*, UNKNOWN_UNIT) leave the document unchanged.
    """
    doc = copy.deepcopy(payload)
    if kind is FaultKind.JSON_ARRAY:
        return {"value": doc} if isinstance(doc, list) else [doc]
    records = doc if isinstance(doc, list) else [doc]
    for record in records:
        if isinstance(record, dict):
            _mutate_record(kind, record)
    return doc


def _merge(target: dict[str, object], patch: Mapping[str, object]) -> None:
    for key, value in patch.items():
        inner = target.get(key)
        if isinstance(value, Mapping) and isinstance(inner, dict):
            _merge(inner, value)
        else:
            target[key] = copy.deepcopy(value)


def patch_document(
    payload: object,
    patch: Mapping[str, object] | None,
    records: Mapping[str, Mapping[str, object]] | None,
) -> object:
    """``payload`` with ``patch`` merged into the object (or into every record of a
    listing), and each of ``records`` into the record with that ``MachineID``. Pure."""
    doc = copy.deepcopy(payload)
    for item in doc if isinstance(doc, list) else [doc]:
        if not isinstance(item, dict):
            continue
        own = (records or {}).get(str(item.get("MachineID")))
        if patch is not None:
            _merge(item, patch)
        if own is not None:
            _merge(item, own)
    return doc


def echo_authorization(document: object, authorization: str) -> object:
    """``document`` with the request's Authorization header planted where a client
    might quote it back: a unit symbol, a number field and an extra top-level field."""
    doc = copy.deepcopy(document)
    if isinstance(doc, dict):
        doc["Echo"] = {"Authorization": authorization}
        machine = doc.get("MachineDashboard")
        if isinstance(machine, dict):
            machine["UnitOfMeasureSymbol"] = authorization
            machine["NumberOfChargingSessions"] = authorization
    elif isinstance(doc, list):
        doc.append({"Authorization": authorization})
    return doc
