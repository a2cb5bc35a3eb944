"""Report rows → CSV or JSON text. Pure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from exporter.report.rows import Row

COLUMNS = (
    "actor_id",
    "machine_id",
    "machine",
    "month",
    "observed_minutes",
    "unknown_minutes",
    "outage_minutes",
    "excluded_minutes",
    "uptime_percent",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _fields(row: Row) -> dict[str, str | int | None]:
    return {
        "actor_id": row.charger.actor_id,
        "machine_id": row.charger.machine_id,
        "machine": row.machine,
        "month": row.period,
        "observed_minutes": row.tally.observed,
        "unknown_minutes": row.tally.unknown,
        "outage_minutes": row.tally.outage,
        "excluded_minutes": row.tally.excluded,
        "uptime_percent": None if row.uptime_percent is None else str(row.uptime_percent),
    }


def spreadsheet_safe(text: str) -> str:
    """A label a spreadsheet would run as a formula (``=HYPERLINK(...)``) gets a
    leading apostrophe (OWASP's advice for CSV injection); ids are digits anyway."""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def to_csv(rows: Sequence[Row]) -> str:
    """RFC 4180 (CRLF line ends, quotes where needed); an empty uptime is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        fields = _fields(row)
        writer.writerow(
            spreadsheet_safe(value) if isinstance(value, str) else "" if value is None else value
            for value in fields.values()
        )
    return out.getvalue()


def to_json(rows: Sequence[Row], parameters: Mapping[str, object]) -> str:
    """``{"parameters": {...}, "rows": [{column: value}, ...]}``; uptime_percent is
    a number (at most 4 decimals, which a float carries exactly as written) or null."""
    items = []
    for row in rows:
        fields: dict[str, object] = dict(_fields(row))
        if row.uptime_percent is not None:
            fields["uptime_percent"] = float(row.uptime_percent)
        items.append(fields)
    document = {"parameters": dict(parameters), "rows": items}
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"
