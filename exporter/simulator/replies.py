"""Answer values and request-parsing helpers shared by the simulator's routes.

Pure helpers: no sockets, no server state. The vendor's own error bodies are in
:mod:`exporter.simulator.vendor`; :func:`sim_error` is the shape of the simulator's
own control API (``/_sim/``), which no vendor answer uses.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "INT32",
    "INT64",
    "JSON_CONTENT_TYPE",
    "BadRequest",
    "Reply",
    "bearer",
    "json_bytes",
    "parse_datetime",
    "parse_int",
    "same",
    "sim_error",
]

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
_INT_RE: Final = re.compile(r"^[+-]?[0-9]+$")
INT64: Final = (-(2**63), 2**63 - 1)
INT32: Final = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


class BadRequest(Exception):
    pass


def json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


def sim_error(status: int, message: str) -> Reply:
    """An error of the control API (``/_sim/``): ``{"error": message}``. Pure."""
    return Reply(status, json_bytes({"error": message}))


def parse_int(text: str, bounds: tuple[int, int], name: str) -> int:
    # int() alone would accept "1_000" and surrounding spaces; .NET binding would not.
    if not _INT_RE.match(text):
        raise BadRequest(f"{name} must be an integer")
    value = int(text)
    if not bounds[0] <= value <= bounds[1]:
        raise BadRequest(f"{name} is out of range")
    return value


def parse_datetime(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)  # 3.11: accepts Z, offsets, fractions
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} is not an ISO 8601 date-time") from None


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))
