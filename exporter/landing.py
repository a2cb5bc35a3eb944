"""The landing page: version, links and a table of targets. Every piece of
config-derived text is HTML-escaped; no secret is ever part of the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from exporter.store import Snapshot, TargetState


@dataclass(frozen=True)
class PageInfo:
    version: str
    telemetry_path: str
    shard: str
    config_file: str
    interval: float
    base_url: str


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _state(state: TargetState, now: float, stale_after: float) -> str:
    if not state.polled:
        return "pending"
    if state.up:
        return "up"
    return "down (stale)" if not state.fresh(now, stale_after) else "down"


def render_landing(info: PageInfo, snapshot: Snapshot, now: float) -> bytes:
    rows = []
    for state in snapshot.states.values():
        target = state.target
        rows.append(
            "<tr>"
            f"<td>{escape(str(target.actor_id))}</td>"
            f"<td>{escape(target.actor)}</td>"
            f"<td>{escape(target.machine or '(actor-wide)')}</td>"
            f"<td>{escape(target.window.name)}</td>"
            f'<td class="state">{escape(_state(state, now, snapshot.stale_after))}</td>'
            f"<td>{escape(_when(state.last_success))}</td>"
            f"<td>{escape(state.last_error or '')}</td>"
            "</tr>"
        )
    telemetry = escape(info.telemetry_path, quote=True)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Nayax EV Exporter</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}</style></head>
<body>
<h1>Nayax EV Exporter</h1>
<p>Version {escape(info.version)} &middot; shard {escape(info.shard)} &middot;
config {escape(info.config_file)} &middot; poll interval {info.interval:g}s &middot;
API {escape(info.base_url)}</p>
<ul>
<li><a href="{telemetry}">Metrics</a></li>
<li><a href="-/healthy">Health</a> &middot; <a href="-/ready">Readiness</a></li>
</ul>
<h2>Targets ({len(rows)})</h2>
<table id="targets">
<thead><tr><th>Actor ID</th><th>Actor</th><th>Machine</th><th>Window</th><th>State</th>
<th>Last success</th><th>Last error</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
</body></html>
"""
    return page.encode("utf-8")
