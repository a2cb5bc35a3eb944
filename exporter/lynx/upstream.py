"""Upstream values made safe: the one boundary for what the Lynx API sends. Pure.

Every parser of an API answer (evDashboard, machine status, the machine listing,
the token exchange, the vendor's error bodies, headers quoted in an error) reads
its values through these functions, and nothing after them sees raw API data:

- **text** is valid Unicode without lone surrogates; control and format
  characters (Unicode categories Cc, Cf, Zl, Zp) become a space (line breaks,
  tabs) or U+FFFD (the rest); it is trimmed and cut to a length (``MAX_TEXT``
  characters for names, numbers and cities), a cut marked by a trailing ``…``;
- **IDs** are ASCII digits (a JSON integer, or a string of digits) within int64;
- **numbers** are JSON numbers, or strings in JSON's own number syntax (ASCII
  only: no ``1_0``, no Arabic-Indic digits, no ``inf``), finite and within
  ``MAX_FIGURE`` of zero;
- **timestamps** are ISO 8601 date-times between ``MIN_TIMESTAMP``
  (2000-01-01) and ``MAX_FUTURE`` ahead of now; outside that range (e.g. .NET's
  ``DateTime.MinValue``, year 1) the value is *absent*, with a reason, never a
  huge negative epoch.

Each reader returns the safe value, or a :class:`Rejected` saying why the raw
value was unusable (a parser turns that into a problem or a counted skip); a
missing or ``null`` value is ``None``. No reader raises.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

__all__ = [
    "CUT_MARK",
    "INT32_MAX",
    "INT64_MAX",
    "MAX_FIGURE",
    "MAX_FUTURE",
    "MAX_TEXT",
    "MIN_TIMESTAMP",
    "Dropped",
    "Rejected",
    "read_float",
    "read_id",
    "read_int",
    "read_text",
    "read_timestamp",
    "safe_text",
    "short_repr",
]

MAX_TEXT: Final = 128  # characters of a name, machine number, city, unit symbol
CUT_MARK: Final = "…"
INT64_MAX: Final = 2**63 - 1
INT32_MAX: Final = 2**31 - 1
# No energy (Wh), sales amount, duration or count of a charging fleet comes near
# 10^15; a larger magnitude is a broken answer, not a figure.
MAX_FIGURE: Final = 1e15
MIN_TIMESTAMP: Final = 946_684_800.0  # 2000-01-01T00:00:00Z, before any Nayax EV meter
# Further ahead than any time-zone reading can explain (offsets stay within 14 h):
# beyond this a timestamp is absent. Closer, but past the 5-minute clock-skew
# allowance, it is published and counted as `clock_skew`.
MAX_FUTURE: Final = 86_400.0
MAX_TIMESTAMP_CHARS: Final = 64
_MAX_NUMBER_CHARS: Final = 64

_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_BREAKS: Final = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029")
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@dataclass(frozen=True)
class Dropped:
    """A value read as absent, or a listing's record skipped, without failing the
    poll: counted (``nayax_ev_values_dropped_total`` / ``nayax_ev_records_skipped_total``
    by the target's kind and ``reason``), never a false alarm."""

    field: str
    reason: str
    record: bool = False  # a whole record of a listing was skipped


@dataclass(frozen=True)
class Rejected:
    """Why a raw value could not be used; ``detail`` is safe to show."""

    reason: str  # "not_text", "not_a_number", "out_of_range", "not_a_timestamp", ...
    detail: str


def short_repr(value: object, limit: int = 40) -> str:
    """Pure: a short, safe rendering of a raw value for an error text."""
    if isinstance(value, str):
        shown = repr(safe_text(value[: limit * 2], limit))
    elif isinstance(value, bool | int | float) or value is None:
        text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "<huge int>"
        shown = text
    else:
        shown = type(value).__name__
    return shown if len(shown) <= limit else shown[: limit - 1] + CUT_MARK


def safe_text(text: str, limit: int = MAX_TEXT) -> str:
    """Pure: ``text`` made safe to log, render and encode, at most ``limit`` characters.

    The common case (printable text within the limit) costs one C-level check."""
    if len(text) > limit * 4:
        text = text[: limit * 4]  # nothing past this can survive the cut below
    if not text.isprintable():
        text = "".join(_safe_char(c) for c in text)
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + CUT_MARK
    return text


def _safe_char(char: str) -> str:
    if char in _BREAKS:
        return " "
    if unicodedata.category(char) in _UNSAFE_CATEGORIES:
        return "\ufffd"
    return char


def read_text(value: object, limit: int = MAX_TEXT) -> str | Rejected | None:
    """Pure: a vendor string as safe text; None when missing, null or blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        return Rejected("not_text", f"not text: {short_repr(value)}")
    text = safe_text(value, limit)
    return text or None


def read_id(value: object) -> int | Rejected | None:
    """Pure: an int64 identifier (> 0): a JSON integer or a string of ASCII digits."""
    if value is None:
        return None
    if isinstance(value, str):
        digits = value.strip()
        if _DIGITS.fullmatch(digits) is None:
            return Rejected("bad_id", f"not an id: {short_repr(value)}")
        number = int(digits)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        return Rejected("bad_id", f"not an id: {short_repr(value)}")
    if not 0 < number <= INT64_MAX:
        return Rejected("bad_id", f"id out of range: {short_repr(value)}")
    return number


def read_float(value: object, *, maximum: float = MAX_FIGURE) -> float | Rejected | None:
    """Pure: a finite number within ``maximum`` of zero: a JSON number, or a string
    in JSON's number syntax (ASCII only)."""
    if value is None:
        return None
    number: float
    if isinstance(value, bool):
        return Rejected("not_a_number", f"not a number: {short_repr(value)}")
    if isinstance(value, int):
        if abs(value) > maximum:
            return Rejected("out_of_range", f"out of range: {short_repr(value)}")
        number = float(value)
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_NUMBER_CHARS or _JSON_NUMBER.fullmatch(text) is None:
            return Rejected("not_a_number", f"not a number: {short_repr(value)}")
        number = float(text)
    else:
        return Rejected("not_a_number", f"not a number: {short_repr(value)}")
    if not math.isfinite(number):
        return Rejected("not_finite", f"not finite: {short_repr(value)}")
    if abs(number) > maximum:
        return Rejected("out_of_range", f"out of range: {short_repr(value)}")
    return number


def read_int(value: object, *, minimum: int, maximum: int) -> int | Rejected | None:
    """Pure: a whole number in ``[minimum, maximum]`` (a JSON integer, an integral
    float, or a string of ASCII digits with an optional minus sign)."""
    if value is None:
        return None
    number = read_float(value, maximum=float(max(abs(minimum), abs(maximum))))
    if not isinstance(number, float):
        return number
    if not number.is_integer():
        return Rejected("not_an_integer", f"not a whole number: {short_repr(value)}")
    whole = int(number)
    if not minimum <= whole <= maximum:
        return Rejected("out_of_range", f"out of range: {short_repr(value)}")
    return whole


def read_timestamp(value: object, zone: tzinfo, now: float) -> float | Rejected | None:
    """Pure: an ISO 8601 date-time → UTC epoch seconds. A zone-less one is read in
    ``zone``; one with ``Z`` or an offset as written. Before ``MIN_TIMESTAMP`` or
    more than ``MAX_FUTURE`` after ``now``: rejected as out of range."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_CHARS or not value.isascii():
        return Rejected("not_a_timestamp", "not an ISO 8601 date-time")
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        epoch = moment.timestamp()
    except (ValueError, OverflowError):
        # OverflowError: year 1 read in a zone east of UTC lies before year 1 in UTC.
        return Rejected("not_a_timestamp", "not an ISO 8601 date-time")
    if not MIN_TIMESTAMP <= epoch <= now + MAX_FUTURE:
        return Rejected("timestamp_out_of_range", f"out of range: {short_repr(value)}")
    return epoch
