"""Deterministic model of an EV-charging fleet as seen through Lynx ``evDashboard``.

Every figure is a pure function of the :class:`FleetSpec`, the requested window and
``now``, so tests can predict answers exactly: the sum of each machine's
transactions recorded in the window (:mod:`exporter.simulator.history`), so the
figures of adjacent windows add up to their union's. The only mutable state is the
set of machines *forced* silent through :meth:`Fleet.silence` (a test/demo switch).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final

from exporter.simulator.history import History, Totals, uniform

__all__ = [
    "DEFAULT_WINDOW",
    "ELECTRICITY_TYPE",
    "EV_CHARGER_TYPE",
    "EV_TYPES",
    "OTHER_KINDS",
    "VENDING_TYPE",
    "Fleet",
    "FleetSpec",
    "Machine",
    "resolve_window",
]

DEFAULT_WINDOW: Final = timedelta(hours=24)
# TimePeriod codes are undocumented upstream; the simulator reads code N as "N days
# ending now". Capped so that int32 codes cannot overflow datetime arithmetic.
_MAX_PERIOD_DAYS: Final = 36_500
# Machine ids are first_machine_id + actor_index * stride + m, so m must stay below it.
_MACHINE_ID_STRIDE: Final = 100_000
_SITES: Final = (
    "Harbour Depot",
    "Central Station",
    "North Park",
    "Airport P3",
    "Old Town Garage",
    "Riverside Mall",
    "Tech Campus",
    "Hospital East",
)
# site -> (city, GeoCountry, latitude, longitude, MachineTimeZoneOffset in hours).
# GeoCountry is an int32 country id; the vendor's own ids (GET /v1/countries) are
# not published, so the simulator uses the ISO 3166-1 numeric codes.
_PLACES: Final = MappingProxyType(
    {
        "Harbour Depot": ("Hamburg", 276, 53.5461, 9.9661, 1.0),
        "Central Station": ("Zurich", 756, 47.3782, 8.5402, 1.0),
        "North Park": ("Chicago", 840, 41.8781, -87.6298, -6.0),
        "Airport P3": ("Tel Aviv", 376, 32.0055, 34.8854, 2.0),
        "Old Town Garage": ("Lisbon", 620, 38.7139, -9.1334, 0.0),
        "Riverside Mall": ("Brisbane", 36, -27.4698, 153.0251, 10.0),
        "Tech Campus": ("Bangalore", 356, 12.9716, 77.5946, 5.5),
        "Hospital East": ("Athens", 300, 37.9838, 23.7275, 2.0),
    }
)
# MachineTypeID codes of the vendor's MachineTypeIDEnum: the two EV kinds, and the
# other kinds an operator's listing holds beside them (an EV exporter skips those).
EV_CHARGER_TYPE: Final = 555007  # "OCPP Electrical Vehicle"
ELECTRICITY_TYPE: Final = 30000526  # "Electricity"
EV_TYPES: Final = frozenset({EV_CHARGER_TYPE, ELECTRICITY_TYPE})
VENDING_TYPE: Final = 30000515  # "Cold Drinks"
# (MachineTypeID, MachineNumber prefix, name): the non-EV machines, in turn.
OTHER_KINDS: Final = (
    (VENDING_TYPE, "VM", "drinks machine"),
    (555008, "PK", "parking meter"),  # "Parking"
    (30000578, "CW", "car wash"),  # "Car Wash Machine"
    (30000579, "LM", "laundry machine"),  # "Laundry Machine"
)
# symbol -> (human name, multiplier applied to kWh figures)
_UNITS: Final = MappingProxyType(
    {
        "kWh": ("Kilowatt hour", 1.0),
        "Wh": ("Watt hour", 1000.0),
        "MWh": ("Megawatt hour", 0.001),
    }
)


@dataclass(frozen=True)
class FleetSpec:
    """Shape of the simulated fleet; everything else is derived from ``seed``."""

    seed: int = 1
    actors: int = 3
    machines_per_actor: int = 10
    first_actor_id: int = 2001492652
    first_machine_id: int = 942488501
    silent_probability: float = 0.1
    silence_period_s: float = 300.0
    energy_unit_symbol: str = "kWh"
    energy_unit_overrides: tuple[tuple[int, str], ...] = ()
    # Non-EV machines per actor, listed by /v1/machines but not counted by evDashboard;
    # the last one of them has no device (its /status is almost all nulls).
    other_machines_per_actor: int = 2
    # Each actor's site in turn (it names the machines and places them), one per
    # actor; empty: drawn from the seed, so two actors may share a site.
    sites: tuple[str, ...] = ()
    activity: float = 1.0  # sessions per hour scale (tests: many sessions in a minute)
    refund_share: float = 0.02  # share of sessions refunded later (sales go down)

    def __post_init__(self) -> None:
        if self.actors < 0:
            raise ValueError("actors must be >= 0")
        if not 0 <= self.machines_per_actor < _MACHINE_ID_STRIDE:
            raise ValueError(f"machines_per_actor must be in [0, {_MACHINE_ID_STRIDE})")
        if not 0.0 <= self.silent_probability <= 1.0:
            raise ValueError("silent_probability must be in [0, 1]")
        if not self.silence_period_s > 0:
            raise ValueError("silence_period_s must be > 0")
        if not 0 <= self.other_machines_per_actor <= 1000:
            raise ValueError("other_machines_per_actor must be in [0, 1000]")
        if self.machines_per_actor + self.other_machines_per_actor >= _MACHINE_ID_STRIDE:
            raise ValueError("too many machines per actor")
        if self.sites and len(self.sites) != self.actors:
            raise ValueError("sites must name one site per actor")
        if unknown := [site for site in self.sites if site not in _PLACES]:
            raise ValueError(f"unknown sites {unknown}; known: {', '.join(_SITES)}")
        if not 0.0 <= self.activity <= 10_000.0:
            raise ValueError("activity must be in [0, 10000]")
        if not 0.0 <= self.refund_share <= 1.0:
            raise ValueError("refund_share must be in [0, 1]")


@dataclass(frozen=True)
class Machine:
    id: int
    number: str
    actor_id: int
    name: str
    machine_type: int = EV_CHARGER_TYPE
    city: str = ""
    country: int | None = None  # GeoCountry: an int32 country id
    latitude: float = 0.0
    longitude: float = 0.0
    tz_offset_hours: float = 0.0
    has_device: bool = True

    @property
    def ev(self) -> bool:
        """Is it of a kind evDashboard counts (an EV charger)?"""
        return self.machine_type in EV_TYPES


@dataclass(frozen=True)
class _Profile:
    """Per-machine behaviour, fixed for the lifetime of the fleet."""

    sessions_per_hour: float
    extra_transaction_share: float  # share of sessions that produce a second transaction
    price_per_session: float
    seconds_per_session: int
    kwh_per_session: float


@dataclass(frozen=True)
class _Unit:
    name: str
    symbol: str
    factor: float


def _lerp(low: float, high: float, u: float) -> float:
    return low + (high - low) * u


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes are UTC by the API's (and our) convention.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _unit_for(symbol: str) -> _Unit:
    name, factor = _UNITS.get(symbol, (symbol, 1.0))
    return _Unit(name=name, symbol=symbol, factor=factor)


def resolve_window(
    start: datetime | None,
    end: datetime | None,
    time_period: int | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """Fill in a request's missing StartDate/EndDate the way the simulator's API does.

    Neither given: the last 24 h, or - simulator-only convention, since the real
    TimePeriod codes are undocumented - ``time_period`` N > 0 means N days ending now.
    Only one given: EndDate defaults to now, StartDate to EndDate - 24 h.
    """
    now = _as_utc(now)
    if start is None and end is None:
        if time_period is not None and time_period > 0:
            days = min(time_period, _MAX_PERIOD_DAYS)
            return _safe_sub(now, timedelta(days=days)), now
        return _safe_sub(now, DEFAULT_WINDOW), now
    end_utc = now if end is None else _as_utc(end)
    start_utc = _safe_sub(end_utc, DEFAULT_WINDOW) if start is None else _as_utc(start)
    return start_utc, end_utc


def _safe_sub(value: datetime, delta: timedelta) -> datetime:
    try:
        return value - delta
    except OverflowError:  # EndDate near year 1: clamp instead of failing
        return datetime.min.replace(tzinfo=UTC)


class Fleet:
    """The simulated fleet. Thread-safe; all methods may be called concurrently."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        overrides = dict(spec.energy_unit_overrides)
        machines: dict[int, tuple[Machine, ...]] = {}
        profiles: dict[int, _Profile] = {}
        units: dict[int, _Unit] = {}
        others: dict[int, tuple[Machine, ...]] = {}
        # Every status request looks its machine up by id: a scan of 10,000 machines
        # per request was the simulator's own cost, slowing the answers it times.
        by_id: dict[int, Machine] = {}
        for a in range(spec.actors):
            actor_id = spec.first_actor_id + a
            site = (
                spec.sites[a]
                if spec.sites
                else _SITES[int(uniform(spec.seed, "site", actor_id) * len(_SITES))]
            )
            units[actor_id] = _unit_for(overrides.get(actor_id, spec.energy_unit_symbol))
            built = [
                self._machine(a, m, site)
                for m in range(spec.machines_per_actor + spec.other_machines_per_actor)
            ]
            machines[actor_id] = tuple(built[: spec.machines_per_actor])
            others[actor_id] = tuple(built[spec.machines_per_actor :])
            for machine in built:
                by_id.setdefault(machine.id, machine)
            for machine in machines[actor_id]:
                profiles[machine.id] = self._profile(machine.id)
        self._machines: Final = MappingProxyType(machines)
        self._others: Final = MappingProxyType(others)
        self._by_id: Final = MappingProxyType(by_id)
        self._profiles: Final = MappingProxyType(profiles)
        self._units: Final = MappingProxyType(units)
        self._lock = threading.Lock()
        self._histories: dict[int, History] = {}  # machine id -> its transactions, when asked
        self._forced: dict[int, int] = {}  # actor_id -> first N machines forced silent
        self._forced_since: dict[int, float] = {}  # actor_id -> epoch of the last keep-alive
        # (actor_id, time bucket) -> (randomly silent ids, ids that drew a session in
        # the last hour); cached because the exporter asks many times per bucket.
        self._status_cache: dict[tuple[int, int], tuple[frozenset[int], frozenset[int]]] = {}

    def _machine(self, a: int, m: int, site: str) -> Machine:
        """Machine ``m`` of actor index ``a``: EV chargers first, then the other kinds."""
        spec = self.spec
        actor_id = spec.first_actor_id + a
        machine_id = spec.first_machine_id + a * _MACHINE_ID_STRIDE + m
        city, country, lat, lon, offset = _PLACES[site]
        ev = m < spec.machines_per_actor
        if ev:  # every fourth charger is an "Electricity" kind
            kind, number, name = (
                ELECTRICITY_TYPE if m % 4 == 3 else EV_CHARGER_TYPE,
                f"EV-{a:03d}-{m:04d}",
                f"{site} charger {m + 1}",
            )
        else:
            k = m - spec.machines_per_actor
            kind, prefix, label = OTHER_KINDS[k % len(OTHER_KINDS)]
            number, name = f"{prefix}-{a:03d}-{k:04d}", f"{site} {label} {k + 1}"
        last = m == spec.machines_per_actor + spec.other_machines_per_actor - 1
        return Machine(
            id=machine_id,
            number=number,
            actor_id=actor_id,
            name=name,
            machine_type=kind,
            city=city,
            country=country,
            latitude=round(lat + _lerp(-0.02, 0.02, uniform(spec.seed, "lat", machine_id)), 6),
            longitude=round(lon + _lerp(-0.02, 0.02, uniform(spec.seed, "lon", machine_id)), 6),
            tz_offset_hours=offset,
            has_device=ev or not last,
        )

    def _profile(self, machine_id: int) -> _Profile:
        seed = self.spec.seed
        rate = _lerp(0.2, 2.0, uniform(seed, "rate", machine_id))
        # Keep a charger's busy time below ~90% of the hour so figures stay plausible.
        max_minutes = max(20.0, min(90.0, 0.9 * 60.0 / rate))
        minutes = _lerp(20.0, max_minutes, uniform(seed, "minutes", machine_id))
        return _Profile(
            sessions_per_hour=rate,
            extra_transaction_share=_lerp(0.0, 0.1, uniform(seed, "extra", machine_id)),
            price_per_session=round(_lerp(3.0, 12.0, uniform(seed, "price", machine_id)), 2),
            seconds_per_session=round(minutes * 60.0),
            kwh_per_session=round(_lerp(5.0, 40.0, uniform(seed, "kwh", machine_id)), 3),
        )

    def history(self, machine_id: int) -> History:
        """An EV machine's transactions (built on first use: a big fleet starts fast).
        Machines not forced silent are silent a ``silent_probability`` share of the
        time on average: their sessions come that much less often."""
        history = self._histories.get(machine_id)
        if history is not None:
            return history
        spec, profile = self.spec, self._profiles[machine_id]
        history = History(
            f"{spec.seed}|{machine_id}",
            sessions_per_hour=profile.sessions_per_hour
            * (1.0 - spec.silent_probability)
            * spec.activity,
            price=profile.price_per_session,
            seconds_per_session=profile.seconds_per_session,
            kwh_per_session=profile.kwh_per_session,
            extra_transaction_share=profile.extra_transaction_share,
            refund_share=spec.refund_share,
        )
        with self._lock:
            return self._histories.setdefault(machine_id, history)

    def totals(
        self, actor_id: int, start: datetime, end: datetime, machine: Machine | None = None
    ) -> Totals:
        """The transactions recorded in [start, end) by the actor's machines (or one),
        the forced silent ones left out: what evDashboard answers for that range."""
        forced = self._forced_ids(actor_id)
        machines = (machine,) if machine is not None else self._machines[actor_id]
        first, last = _as_utc(start).timestamp(), _as_utc(end).timestamp()
        total = Totals()
        for m in machines:
            if m.id not in forced:
                total += self.history(m.id).between(first, last)
        return total

    # -- structure ---------------------------------------------------------------------

    def actor_ids(self) -> list[int]:
        return list(self._machines)

    def machines(self, actor_id: int) -> list[Machine]:
        """The actor's machines (empty list for an unknown actor)."""
        return list(self._machines.get(actor_id, ()))

    def listed_machines(self, actor_id: int) -> list[Machine]:
        """What ``/v1/machines`` lists for the actor: its EV chargers, then other kinds."""
        return [*self._machines.get(actor_id, ()), *self._others.get(actor_id, ())]

    def machine_by_id(self, machine_id: int) -> Machine | None:
        """Any listed machine with that id, of any actor."""
        return self._by_id.get(machine_id)

    def find_machine(
        self, actor_id: int, machine_id: int | None, machine_number: str | None
    ) -> Machine | None:
        """The actor's machine with that id or number; None if absent or not the actor's."""
        for machine in self._machines.get(actor_id, ()):
            if machine_id is not None and machine.id == machine_id:
                return machine
            if machine_number is not None and machine.number == machine_number:
                return machine
        return None

    # -- forced silence (test/demo switch) ---------------------------------------------

    def silence(
        self, actor_id: int, count: int, since_s: float = 7200.0, now: float | None = None
    ) -> None:
        """Force the actor's first ``count`` machines silent (replaces any earlier count);
        their last keep-alive (``/status``) is ``since_s`` seconds before ``now``."""
        if actor_id not in self._machines:
            raise KeyError(f"unknown actor {actor_id}")
        if count < 0:
            raise ValueError("count must be >= 0")
        if not 0 <= since_s <= 10 * 365 * 86400:
            raise ValueError("since_s must be in [0, ten years]")
        with self._lock:
            self._forced[actor_id] = count
            self._forced_since[actor_id] = (time.time() if now is None else now) - since_s

    def forced_since(self, actor_id: int) -> float | None:
        """Epoch seconds of the forced-silent machines' last keep-alive, if any."""
        with self._lock:
            return self._forced_since.get(actor_id) if self._forced.get(actor_id) else None

    def unsilence(self, actor_id: int | None = None) -> None:
        with self._lock:
            if actor_id is None:
                self._forced.clear()
                self._forced_since.clear()
            else:
                self._forced.pop(actor_id, None)
                self._forced_since.pop(actor_id, None)

    def silence_state(
        self, actor_id: int, now: datetime
    ) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
        """(randomly silent, forced silent, busy) EV machine ids of the actor at ``now``:
        the same sets evDashboard counts, so ``/status`` agrees with its counts."""
        random_silent, busy = self._random_status(actor_id, _as_utc(now))
        return random_silent, self._forced_ids(actor_id), busy

    def _forced_ids(self, actor_id: int) -> frozenset[int]:
        with self._lock:
            count = self._forced.get(actor_id, 0)
        return frozenset(m.id for m in self._machines[actor_id][:count])

    # -- figures -----------------------------------------------------------------------

    def _random_status(self, actor_id: int, now: datetime) -> tuple[frozenset[int], frozenset[int]]:
        bucket = math.floor(now.timestamp() / self.spec.silence_period_s)
        key = (actor_id, bucket)
        with self._lock:
            cached = self._status_cache.get(key)
        if cached is not None:
            return cached
        seed, p = self.spec.seed, self.spec.silent_probability
        silent = frozenset(
            m.id for m in self._machines[actor_id] if uniform(seed, "silent", m.id, bucket) < p
        )
        # Poisson: P(at least one session in an hour) = 1 - exp(-rate).
        busy = frozenset(
            m.id
            for m in self._machines[actor_id]
            if uniform(seed, "active", m.id, bucket)
            < 1.0 - math.exp(-self._profiles[m.id].sessions_per_hour)
        )
        with self._lock:
            if len(self._status_cache) > 256:  # only recent buckets are ever asked for again
                self._status_cache.clear()
            self._status_cache[key] = (silent, busy)
        return silent, busy

    def dashboard(
        self,
        actor_id: int,
        *,
        start: datetime,
        end: datetime,
        machine: Machine | None,
        time_period: int | None,
        now: datetime,
    ) -> dict[str, object]:
        """The evDashboard response body for one actor (see the reference doc).
        ``TotalEnergyConsumption`` keeps its decimals although the vendor's document
        types it int32: an integer cannot hold a realistic kWh (or MWh) figure.

        Raises KeyError for an unknown actor and ValueError for a machine of another
        actor or start > end. The window is clipped at ``now`` (no data from the future).
        """
        actor_machines = self._machines.get(actor_id)
        if actor_machines is None:
            raise KeyError(f"unknown actor {actor_id}")
        if machine is not None and machine not in actor_machines:
            raise ValueError(f"machine {machine.id} does not belong to actor {actor_id}")
        start, end, now = _as_utc(start), _as_utc(end), _as_utc(now)
        if start > end:
            raise ValueError("start is after end")

        random_silent, busy = self._random_status(actor_id, now)
        forced = self._forced_ids(actor_id)
        silent = random_silent | forced
        total = len(actor_machines)

        eff_end = min(end, now)
        figures = self.totals(actor_id, min(start, eff_end), eff_end, machine)
        unit = self._units[actor_id]

        return {
            "OperatorDashboard": {
                "TotalOperatorMachines": total,
                "TotalCommunicatingMachines": total - len(silent),
                "TotalActiveMachines": len(busy - silent),
                "TotalSilentMachines": len(silent),
            },
            "MachineDashboard": {
                "UnitOfMeasure": unit.name,
                "UnitOfMeasureSymbol": unit.symbol,
                "NumberOfChargingSessions": figures.sessions,
                "NumberOfTransactionsForTimeInterval": figures.transactions,
                "SalesAmountForTimeInterval": figures.sales_cents / 100,
                "TotalChargingSessionsDuration": figures.duration_seconds,
                # Whole Wh, so Wh/MWh are exact rescalings of the same figure.
                "TotalEnergyConsumption": round(figures.energy_wh / 1000 * unit.factor, 6),
            },
            "TimePeriod": time_period,
        }
