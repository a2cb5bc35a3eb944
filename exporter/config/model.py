"""The configuration's model: immutable dataclasses, one per section.

What a valid config *is*; how YAML text becomes one is exporter/config/parse.py
(every problem with its key path), and the discovery and machine-status sections'
parsing is exporter/config/machines.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from exporter.config.validate import ConfigError, Secret

DEFAULT_BASE_URL = "https://lynx.nayax.com/operational"
DEFAULT_AUTH_URL = "https://lynx-api.nayax.com"  # where refresh tokens are exchanged
DEFAULT_LISTEN_ADDRESS = ":9877"  # --web.listen-address
# The `window` labels of the machine-status and discovery targets: a configured
# window of that name would publish the same series as they do.
RESERVED_WINDOW_NAMES = ("status", "discovery")

DurationUnit = Literal["seconds", "minutes", "hours"]
EnergyUnit = Literal["auto", "Wh", "kWh", "MWh"]
CalendarPeriod = Literal["day", "week", "month"]
# The anchor of a cumulative window (its counters start at 0 there), and the
# longest date range one request may ask for (the vendor's maximum is undocumented).
CumulativePeriod = Literal["month", "year"]
RequestSpan = Literal["day", "month", "year"]

DURATION_UNITS: tuple[DurationUnit, ...] = ("seconds", "minutes", "hours")
ENERGY_UNITS: tuple[EnergyUnit, ...] = ("auto", "Wh", "kWh", "MWh")
CALENDAR_PERIODS: tuple[CalendarPeriod, ...] = ("day", "week", "month")
CUMULATIVE_PERIODS: tuple[CumulativePeriod, ...] = ("month", "year")
REQUEST_SPANS: tuple[RequestSpan, ...] = ("day", "month", "year")


class RefreshToken(Secret):
    """A scoped refresh token: never sent to the data endpoints, but exchanged at
    ``{auth_url}/v1/issue-access-token`` for the access tokens they accept
    (``exporter/tokens.py``). Where a token is expected it stands in for the access
    tokens it yields: its value keys the 429 holds of the requests made with them."""

    __slots__ = ("auth_url",)

    def __init__(self, value: str, auth_url: str = DEFAULT_AUTH_URL) -> None:
        super().__init__(value)
        self.auth_url = auth_url

    def __repr__(self) -> str:
        return "RefreshToken('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RefreshToken)
            and other.reveal() == self.reveal()
            and other.auth_url == self.auth_url
        )

    def __hash__(self) -> int:
        return hash((self.reveal(), self.auth_url))


@dataclass(frozen=True)
class LynxConfig:
    base_url: str = DEFAULT_BASE_URL
    token: Secret | None = None  # from `token`, or read from `token_file`
    token_file: Path | None = None
    timeout: float = 10.0
    max_retries: int = 3
    retry_backoff: float = 0.5  # first backoff; doubles per attempt, with jitter
    retry_backoff_max: float = 30.0
    rate_limit_per_second: float = 5.0  # 0 = unlimited
    max_concurrency: int = 4
    retry_after_max: float = 300.0  # the longest a 429's Retry-After holds a token
    refresh_token: RefreshToken | None = None  # from `refresh_token` or `refresh_token_file`
    refresh_token_file: Path | None = None
    auth_url: str = DEFAULT_AUTH_URL


@dataclass(frozen=True)
class PollConfig:
    interval: float = 60.0
    stale_after: float = 180.0


@dataclass(frozen=True)
class WindowConfig:
    """One interval the interval-bound figures are asked for.

    Exactly one of ``rolling`` (seconds back from now), ``calendar`` (the current
    day/week/month in ``timezone``), ``time_period`` (passed through verbatim) or
    ``cumulative`` (everything since the start of the current month/year in
    ``timezone``, published as counters: docs/counters.md), which asks for at most
    ``max_request_span`` per request.
    """

    name: str
    rolling: float | None = None
    calendar: CalendarPeriod | None = None
    timezone: str = "UTC"
    time_period: int | None = None
    cumulative: CumulativePeriod | None = None
    max_request_span: RequestSpan = "month"


@dataclass(frozen=True)
class UnitsConfig:
    duration: DurationUnit = "seconds"
    energy: EnergyUnit = "auto"


@dataclass(frozen=True)
class MachineConfig:
    id: int | None = None
    number: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The ``machine`` label: configured name, else id, else number."""
        if self.name:
            return self.name
        if self.id is not None:
            return str(self.id)
        return self.number or ""


@dataclass(frozen=True)
class ActorConfig:
    id: int
    name: str | None = None
    currency: str = ""
    token: Secret | None = None
    machines: tuple[MachineConfig, ...] = ()
    discover: bool = False  # list this actor's machines from GET /v1/machines
    refresh_token: RefreshToken | None = None

    @property
    def label(self) -> str:
        """The ``actor`` label: configured name, else the id."""
        return self.name or str(self.id)


DEFAULT_WINDOWS: tuple[WindowConfig, ...] = (WindowConfig(name="24h", rolling=86400.0),)


# MachineTypeID 555007 = "OCPP Electrical Vehicle", 30000526 = "Electricity".
EV_MACHINE_TYPES: Final = (555007, 30000526)
TIMESTAMP_CONVENTIONS: Final = ("utc", "machine")


@dataclass(frozen=True)
class DiscoveryConfig:
    interval: float = 3600.0
    machine_types: tuple[int, ...] = EV_MACHINE_TYPES  # () = every kind


@dataclass(frozen=True)
class MachineStatusConfig:
    enabled: bool | None = None  # None: on when any machine is configured or discovered
    interval: float = 300.0
    timestamps: str = "utc"  # "utc", "machine" or an IANA zone name


@dataclass(frozen=True)
class Config:
    actors: tuple[ActorConfig, ...]
    lynx: LynxConfig = field(default_factory=LynxConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    windows: tuple[WindowConfig, ...] = DEFAULT_WINDOWS
    units: UnitsConfig = field(default_factory=UnitsConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    machine_status: MachineStatusConfig = field(default_factory=MachineStatusConfig)

    @property
    def status_enabled(self) -> bool:
        """Machine status is polled: as configured, else when any machine is known."""
        if self.machine_status.enabled is not None:
            return self.machine_status.enabled
        return any(actor.machines or actor.discover for actor in self.actors)

    def token_for(self, actor: ActorConfig) -> Secret:
        """The token an actor's requests carry: its own, else the global one; a
        refresh token stands for the access tokens it is exchanged for."""
        token = actor.token or actor.refresh_token or self.lynx.token or self.lynx.refresh_token
        if token is None:  # validation guarantees one of them exists
            raise ConfigError([f"actor {actor.id}: no token"])
        return token
