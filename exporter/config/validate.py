"""Validator primitives shared by every YAML file the exporter reads.

One dialect for ``--config.file`` (exporter/config.py) and ``--web.config.file``
(exporter/webconfig.py): a :class:`Validator` walks the parsed tree, records
*every* problem with its key path (``actors[1].machines[0].id: must be an
integer``), suggests the closest allowed key for a typo, and never quotes a
secret value. Each primitive returns the checked value, or None after recording
why it is unusable, so a section builder keeps going and reports the rest.

Durations use the Prometheus forms (``1h30m``, ``1d``, ``1w``, ``500ms``) and are
bounded per key, so no configured wait can overflow a timer.
"""

from __future__ import annotations

import difflib
import math
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


class ConfigError(Exception):
    """The configuration is unusable; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.errors))


class Secret:
    """A string that never shows itself in reprs, logs or exception texts."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:  # pickling would be a leak path too
        raise TypeError("Secret cannot be pickled")


# --- durations -------------------------------------------------------------------

_UNIT_SECONDS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
# Prometheus' model.ParseDuration: integer parts, largest unit first, each at most once.
_PROMETHEUS_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?"
)
_PROMETHEUS_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
# Also one decimal number with a unit (`1.5h`, `0.25s`), as this exporter always read.
_DECIMAL_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
DURATION_HINT = "a duration like 500ms, 30s, 5m, 1h30m, 1d or 1w"


def parse_duration(text: str) -> float:
    """``"500ms"`` → 0.5, ``"1h30m"`` → 5400.0, ``"1.5h"`` → 5400.0. Pure.

    Raises ValueError (without quoting the text) on anything else."""
    value = text.strip()
    if len(value) > 64:
        raise ValueError(f"not {DURATION_HINT}")
    decimal = _DECIMAL_DURATION.fullmatch(value)
    if decimal:
        return float(decimal.group(1)) * _UNIT_SECONDS[decimal.group(2)]
    match = _PROMETHEUS_DURATION.fullmatch(value)
    if not value or match is None:
        raise ValueError(f"not {DURATION_HINT}")
    return sum(
        int(part) * _UNIT_SECONDS[unit]
        for part, unit in zip(match.groups(), _PROMETHEUS_ORDER, strict=True)
        if part is not None
    )


def format_duration(seconds: float) -> str:
    """The Prometheus form: 5400 → ``1h30m``, 0.5 → ``500ms``. Pure."""
    millis = round(seconds * 1000)
    if millis <= 0 or not math.isclose(millis / 1000, seconds, rel_tol=1e-9, abs_tol=1e-9):
        return f"{seconds:g}s"
    parts: list[str] = []
    for unit in _PROMETHEUS_ORDER:
        size = round(_UNIT_SECONDS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


# --- secrets that go into HTTP headers -------------------------------------------

_INVISIBLE = {"\ufeff": "a byte-order mark", "\u200b": "a zero-width space"}
SECRET_STRIP = string.whitespace + "\ufeff"


def header_unsafe(value: str) -> str | None:
    """Why ``value`` cannot travel as a Bearer token in an HTTP header, or None.

    Only visible ASCII is allowed (RFC 6750's token characters are a subset);
    the answer names the character's kind and position, never the value. Pure."""
    for index, char in enumerate(value):
        if "!" <= char <= "~":
            continue
        if char in "\r\n":
            what = "a line break (a second line?)"
        elif char in _INVISIBLE:
            what = _INVISIBLE[char]
        elif char in " \t":
            what = "whitespace"
        elif ord(char) < 32 or ord(char) == 127:
            what = "a control character"
        else:
            what = "a non-ASCII character"
        return f"holds {what} at character {index + 1}, which an HTTP header cannot carry"
    return None


# --- bad values repeated in errors ----------------------------------------------

QUOTED_VALUE_MAX = 40  # characters of a bad value an error repeats


class FromEnvironment(str):
    """Text a ``${VAR}`` put into the config. It may be a token placed under the
    wrong key by mistake, so an error never repeats it."""

    __slots__ = ()


def quoted(node: object) -> str:
    """A bad (never secret) value as an error repeats it: cut to QUOTED_VALUE_MAX
    characters and written as a Python literal, so a line break, a control, format
    or bidi character or a lone surrogate shows escaped and the error stays one
    printable line. A list, a mapping or a huge integer is named, not written out;
    text from an environment variable is not shown. Pure."""
    if isinstance(node, FromEnvironment):
        return "a value from an environment variable (not shown)"
    if isinstance(node, bool) or node is None:
        return {True: "true", False: "false", None: "null"}[node]
    if isinstance(node, list | dict):
        return "a list" if isinstance(node, list) else "a mapping"
    if isinstance(node, int) and node.bit_length() > 64:
        return "an integer beyond 64 bits"  # str() of 4,301 digits would raise
    if not isinstance(node, str):
        return repr(node)  # a number: short, printable
    return repr(node[:QUOTED_VALUE_MAX]) + ("…" if len(node) > QUOTED_VALUE_MAX else "")


def _unprintable(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Validator:
    """Records problems with key paths while checking the raw YAML tree."""

    def __init__(self, errors: list[str] | None = None) -> None:
        self.errors: list[str] = [] if errors is None else errors  # may be shared

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or '<root>'}: {message}")

    def errors_for(self, prefix: str) -> bool:
        return any(e.startswith(prefix) for e in self.errors)

    def mapping(self, node: object, path: str, allowed: Sequence[str]) -> dict[str, object]:
        """The known keys of a mapping; unknown keys get a "did you mean" hint."""
        result: dict[str, object] = {}
        for key, value in self.any_mapping(node, path).items():
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {type(key).__name__}")
                continue
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.error(
                    join(path, key), f"unknown key{suggestion}; allowed: {', '.join(allowed)}"
                )
                continue
            result[key] = value
        return result

    def any_mapping(self, node: object, path: str) -> dict[object, object]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.error(path, "must be a mapping")
            return {}
        return node

    def string(self, node: object, path: str) -> str | None:
        """A non-empty single-line string; YAML numbers are read as their text."""
        if node is None:
            return None
        if isinstance(node, bool) or not isinstance(node, str | int | float):
            self.error(path, "must be a string")
            return None
        text = str(node)
        if not text.strip():
            self.error(path, "must not be empty")
            return None
        if not text.isprintable() and any(_unprintable(c) for c in text):
            # Cc, Cf, Cs, Zl, Zp: a label or log line must stay one clean line, and a
            # lone surrogate (YAML's "\ud800") cannot even be encoded.
            self.error(path, "must not contain control or format characters")
            return None
        return text

    def secret(self, node: object, path: str) -> Secret | None:
        """A token: surrounding whitespace removed, then it must fit a header."""
        if node is None:
            return None
        if isinstance(node, bool) or not isinstance(node, str | int | float):
            self.error(path, "must be a string")
            return None
        return self.secret_text(str(node), path)

    def secret_text(self, text: str, path: str) -> Secret | None:
        value = text.strip(SECRET_STRIP)
        if not value:
            self.error(path, "must not be empty")
            return None
        problem = header_unsafe(value)
        if problem is not None:
            self.error(path, f"the token {problem}")
            return None
        return Secret(value)

    def integer(
        self,
        node: object,
        path: str,
        *,
        minimum: int = 0,
        maximum: int = INT64_MAX,
        allow_text: bool = True,
    ) -> int | None:
        """An integer in range; digits in a string too unless ``allow_text`` is off."""
        if node is None:
            return None
        value: int | None = None
        if isinstance(node, int) and not isinstance(node, bool):
            value = node
        elif allow_text and isinstance(node, str) and re.fullmatch(r"\s*\d{1,19}\s*", node):
            value = int(node)
        if value is None:
            self.error(path, "must be an integer")
            return None
        if not minimum <= value <= maximum:
            self.error(path, f"must be between {minimum} and {maximum}")
            return None
        return value

    def number(
        self, node: object, path: str, *, minimum: float = 0.0, maximum: float = math.inf
    ) -> float | None:
        if node is None:
            return None
        if isinstance(node, bool) or not isinstance(node, int | float):
            self.error(path, "must be a number")
            return None
        try:
            value = float(node)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or not minimum <= value <= maximum:
            bound = f"between {minimum:g} and {maximum:g}" if math.isfinite(maximum) else ""
            self.error(path, f"must be a finite number {bound or f'>= {minimum:g}'}")
            return None
        return value

    def duration(self, node: object, path: str, *, minimum: float, maximum: float) -> float | None:
        """A duration in seconds within [minimum, maximum]; a bare number is seconds."""
        if node is None:
            return None
        if isinstance(node, bool) or not isinstance(node, str | int | float):
            self.error(path, f"must be {DURATION_HINT}; got {quoted(node)}")
            return None
        try:
            seconds = parse_duration(node) if isinstance(node, str) else float(node)
        except OverflowError:
            seconds = math.inf
        except ValueError:
            self.error(path, f"must be {DURATION_HINT}; got {quoted(node)}")
            return None
        if not (math.isfinite(seconds) and minimum <= seconds <= maximum):
            low, high = format_duration(minimum), format_duration(maximum)
            self.error(path, f"must be between {low} and {high}; got {quoted(node)}")
            return None
        return seconds

    def choice(self, node: object, path: str, choices: Sequence[str]) -> str | None:
        if node is None:
            return None
        if not isinstance(node, str) or node not in choices:
            self.error(path, f"must be one of {', '.join(choices)}")
            return None
        return node

    def boolean(self, node: object, path: str) -> bool | None:
        if node is None:
            return None
        if not isinstance(node, bool):
            self.error(path, "must be true or false")
            return None
        return node

    def sequence(self, node: object, path: str) -> list[object]:
        if node is None:
            return []
        if not isinstance(node, list):
            self.error(path, "must be a list")
            return []
        return node

    def strings(self, node: object, path: str) -> tuple[str, ...] | None:
        if node is None:
            return None
        if not isinstance(node, list) or not all(isinstance(v, str) for v in node):
            self.error(path, "must be a list of strings")
            return None
        return tuple(node)

    def one_of(self, node: object, path: str, choices: Mapping[str, object]) -> str | None:
        return self.choice(node, path, tuple(choices))
