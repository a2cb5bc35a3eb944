"""Configuration: the model (``model``), YAML text → model with every problem and its
key path (``parse``, ``machines``), the validator primitives and ``Secret``
(``validate``), the hostile-file-safe YAML loader (``yamlload``) and the
``--web.config.file`` (``web``).

This face is what the rest of the exporter imports; modules inside the package
import each other directly.
"""

from exporter.config.model import (
    CALENDAR_PERIODS,
    CUMULATIVE_PERIODS,
    DEFAULT_AUTH_URL,
    DEFAULT_BASE_URL,
    DEFAULT_LISTEN_ADDRESS,
    DURATION_UNITS,
    ENERGY_UNITS,
    EV_MACHINE_TYPES,
    REQUEST_SPANS,
    ActorConfig,
    Config,
    CumulativePeriod,
    DiscoveryConfig,
    DurationUnit,
    EnergyUnit,
    LynxConfig,
    MachineConfig,
    MachineStatusConfig,
    PollConfig,
    RefreshToken,
    RequestSpan,
    UnitsConfig,
    WindowConfig,
)
from exporter.config.parse import load_config, parse_config, read_token_file
from exporter.config.validate import (
    INT32_MAX,
    INT64_MAX,
    ConfigError,
    Secret,
    format_duration,
    parse_duration,
)

__all__ = [
    "CALENDAR_PERIODS",
    "CUMULATIVE_PERIODS",
    "DEFAULT_AUTH_URL",
    "DEFAULT_BASE_URL",
    "DEFAULT_LISTEN_ADDRESS",
    "DURATION_UNITS",
    "ENERGY_UNITS",
    "EV_MACHINE_TYPES",
    "INT32_MAX",
    "INT64_MAX",
    "REQUEST_SPANS",
    "ActorConfig",
    "Config",
    "ConfigError",
    "CumulativePeriod",
    "DiscoveryConfig",
    "DurationUnit",
    "EnergyUnit",
    "LynxConfig",
    "MachineConfig",
    "MachineStatusConfig",
    "PollConfig",
    "RefreshToken",
    "RequestSpan",
    "Secret",
    "UnitsConfig",
    "WindowConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "read_token_file",
]
