"""Window → query parameters, for a given instant. Pure."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from exporter.config import WindowConfig


def format_instant(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, e.g. ``2026-11-23T20:15:00Z``."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def calendar_start(now: datetime, period: str, timezone: str) -> datetime:
    """Start of the current day (ISO week: Monday) or month in ``timezone``."""
    local = now.astimezone(zoneinfo.ZoneInfo(timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        midnight -= timedelta(days=local.weekday())
    elif period == "month":
        midnight = midnight.replace(day=1)
    # Re-localise: on DST-change days midnight's offset differs from now's.
    naive = midnight.replace(tzinfo=None)
    return naive.replace(tzinfo=zoneinfo.ZoneInfo(timezone))


def window_params(window: WindowConfig, now: datetime) -> dict[str, str]:
    """The query parameters that ask for ``window`` at ``now`` (an aware datetime)."""
    if window.time_period is not None:
        return {"TimePeriod": str(window.time_period)}
    if window.calendar is not None:
        start = calendar_start(now, window.calendar, window.timezone)
    else:
        start = now - timedelta(seconds=window.rolling or 86400.0)
    return {"StartDate": format_instant(start), "EndDate": format_instant(now)}
