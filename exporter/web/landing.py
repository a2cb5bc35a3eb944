"""The landing page and the paged target list. Every piece of config-derived text
is HTML-escaped; no secret is ever part of a page.

The landing page leads with what the on-call person needs: per actor the machines,
the silent ones and the targets down; then the silent machines (longest silence
first) and the failing targets; then the first targets of the full list, which is
reachable page by page under ``targets/<n>``, so the page stays small and fast at
10,000 targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Final

from exporter.metrics.render_guard import RenderGuard
from exporter.polling.store import Snapshot, TargetState
from exporter.targets import TargetKey
from exporter.web.fleet_summary import ActorSummary, FleetSummary, SilentMachine, summarize

TARGETS_ON_LANDING: Final = 100  # of the full list, failing ones first
FAILING_ON_LANDING: Final = 100
TARGETS_PER_PAGE: Final = 500


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


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def _state(state: TargetState, now: float, stale_after: float) -> str:
    if not state.polled:
        return "pending"
    if state.up:
        return "up"
    # Stale: the data it once had is no longer published. Never had any: plain down.
    stale = state.reading is not None and not state.fresh(now, stale_after)
    return "down (stale)" if stale else "down"


# A target row's class, by its state's text: the colour the style sheet gives it.
_STATE_CLASS: Final = {"pending": "pending", "up": "up", "down": "down", "down (stale)": "stale"}


def _cells(*values: str, row_class: str = "") -> str:
    opening = f'<tr class="{row_class}">' if row_class else "<tr>"
    return opening + "".join(f"<td>{escape(v)}</td>" for v in values) + "</tr>"


def _target_row(state: TargetState, now: float, stale_after: float) -> str:
    target = state.target
    shown = _state(state, now, stale_after)
    row = (
        f'<tr class="{_STATE_CLASS[shown]}">'
        f"<td>{escape(str(target.actor_id))}</td>"
        f"<td>{escape(target.actor)}</td>"
        f"<td>{escape(target.machine_label or '(actor-wide)')}</td>"
        f"<td>{escape(target.window.name)}</td>"
        f'<td class="state">{escape(shown)}</td>'
        f"<td>{escape(_when(state.last_success))}</td>"
        f"<td>{escape(state.last_error or '')}</td>"
        "</tr>"
    )
    row.encode("utf-8")  # a row the page could not carry fails here, alone
    return row


def _unshown_row(key: TargetKey) -> str:
    shown = escape(str(key).encode("utf-8", "backslashreplace").decode("utf-8"))
    return (
        f'<tr class="down"><td colspan="7">target {shown} could not be shown (see the log)</td>'
        "</tr>"
    )


def _target_rows(
    states: Iterable[TargetState], now: float, stale_after: float, guard: RenderGuard | None
) -> str:
    """The rows of ``states``; one that fails to render is replaced by a note."""
    rows, fine = [], []
    for state in states:
        try:
            rows.append(_target_row(state, now, stale_after))
            fine.append(state.target.key)
        except Exception as error:
            if guard is not None:
                guard.failed(state.target.key, "page", error)
            rows.append(_unshown_row(state.target.key))
    if guard is not None:
        guard.rendered(fine, "page")
    return "".join(rows)


_TARGET_HEAD: Final = (
    "<thead><tr><th>Actor ID</th><th>Actor</th><th>Machine</th><th>Window</th><th>State</th>"
    "<th>Last success</th><th>Last error</th></tr></thead>"
)


# State colours (inline: the page's Content-Security-Policy admits inline styles only).
# Up green, down red, stale amber, pending grey; silent machines and the counts that
# need attention on amber, the text always there beside the colour.
_STATE_STYLE: Final = (
    "tr.up td.state{background:#c8e6c9}tr.down td.state{background:#ffcdd2}"
    "tr.stale td.state{background:#ffe0b2}tr.pending td.state{background:#eee;color:#555}"
    "tr.silent td{background:#fff3cd}"
    "tr.with-silent td:nth-child(4),tr.with-down td:nth-child(5){background:#fff3cd;"
    "font-weight:bold}p.none{color:#555}"
)


def _page(title: str, info: PageInfo, body: str, root: str = "") -> bytes:
    telemetry = escape(info.telemetry_path, quote=True)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{escape(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}{_STATE_STYLE}</style></head>
<body>
<h1>Nayax EV Exporter</h1>
<p>Version {escape(info.version)} &middot; shard {escape(info.shard)} &middot;
config {escape(info.config_file)} &middot; poll interval {info.interval:g}s &middot;
API {escape(info.base_url)}</p>
<ul>
<li><a href="{telemetry}">Metrics</a></li>
<li><a href="{root}-/healthy">Health</a> &middot; <a href="{root}-/ready">Readiness</a></li>
</ul>
{body}
</body></html>
"""
    return page.encode("utf-8")


def _silent_row(machine: SilentMachine, now: float) -> str:
    row = _cells(
        machine.machine,
        machine.actor,
        machine.city,
        _ago(now - machine.last_keepalive),
        _when(machine.last_keepalive),
        {None: "", True: "connected", False: "disconnected"}[machine.mqtt_connected],
        row_class="silent",
    )
    row.encode("utf-8")
    return row


def _silent_rows(summary: FleetSummary, now: float) -> str:
    rows = []
    for machine in summary.silent:
        try:
            rows.append(_silent_row(machine, now))
        except Exception:  # its status target's own row says why, through the guard
            rows.append('<tr><td colspan="6">a machine that could not be shown</td></tr>')
    return "".join(rows)


def _actor_row(actor: ActorSummary) -> str:
    """Silent machines and targets down are the counts that need attention."""
    flags = " ".join(
        name
        for name, count in (("with-silent", actor.silent), ("with-down", actor.targets_down))
        if count
    )
    values = (str(actor.actor_id), actor.actor, str(actor.machines), str(actor.silent))
    return _cells(*values, str(actor.targets_down), row_class=flags)


def _summary_sections(summary: FleetSummary, now: float) -> str:
    actors = "".join(_actor_row(a) for a in summary.actors)
    if summary.silent:
        silent = f"""<p>Last keep-alive more than an hour ago, longest silence first.</p>
<table id="silent"><thead><tr><th>Machine</th><th>Actor</th><th>City</th>
<th>Silent for</th><th>Last keep-alive</th><th>MQTT</th></tr></thead>
<tbody>{_silent_rows(summary, now)}</tbody></table>"""
    else:
        silent = '<p id="silent" class="none">No machine has been silent for over an hour.</p>'
    return f"""<h2>Actors ({len(summary.actors)})</h2>
<table id="actors"><thead><tr><th>Actor ID</th><th>Actor</th><th>Machines</th>
<th>Silent</th><th>Targets down</th></tr></thead><tbody>{actors}</tbody></table>
<h2>Silent machines ({len(summary.silent)})</h2>
{silent}"""


def _failing_section(
    summary: FleetSummary, pending: int, now: float, stale_after: float, guard: RenderGuard | None
) -> str:
    """The failing targets, or one line saying there are none."""
    if not summary.failing:
        waiting = f"; {pending} not polled yet" if pending else ""
        return f"""<h2>Failing targets (0)</h2>
<p id="failing" class="none">No target is failing{waiting}.</p>"""
    failing = summary.failing[:FAILING_ON_LANDING]
    more = len(summary.failing) - len(failing)
    return f"""<h2>Failing targets ({len(summary.failing)})</h2>
<table id="failing">{_TARGET_HEAD}<tbody>
{_target_rows(failing, now, stale_after, guard)}
</tbody></table>
{f"<p>and {more} more</p>" if more else ""}"""


def render_landing(
    info: PageInfo, snapshot: Snapshot, now: float, guard: RenderGuard | None = None
) -> bytes:
    states = list(snapshot.states.values())
    summary = summarize(states, now)
    stale_after = snapshot.stale_after
    pending = sum(1 for state in states if not state.polled)
    failing_ids = {id(s) for s in summary.failing}
    ordered = [*summary.failing, *(s for s in states if id(s) not in failing_ids)]
    shown = ordered[:TARGETS_ON_LANDING]
    rest = (
        f'<p>{len(states) - len(shown)} more: <a href="targets/1">all {len(states)} '
        "targets, page by page</a></p>"
        if len(shown) < len(states)
        else ""
    )
    body = f"""{_summary_sections(summary, now)}
{_failing_section(summary, pending, now, stale_after, guard)}
<h2>Targets ({len(states)})</h2>
<p>Failing first.</p>
<table id="targets">{_TARGET_HEAD}<tbody>
{_target_rows(shown, now, stale_after, guard)}
</tbody></table>
{rest}"""
    return _page("Nayax EV Exporter", info, body)


def page_count(targets: int) -> int:
    """Pure."""
    return max(1, -(-targets // TARGETS_PER_PAGE))


def render_target_page(
    info: PageInfo, snapshot: Snapshot, now: float, page: int, guard: RenderGuard | None = None
) -> bytes:
    """Page ``page`` (from 1, clamped to the pages there are) of every target, in
    config order."""
    states: Sequence[TargetState] = list(snapshot.states.values())
    pages = page_count(len(states))
    page = min(max(page, 1), pages)
    chunk = states[(page - 1) * TARGETS_PER_PAGE : page * TARGETS_PER_PAGE]
    links = ['<a href="../">summary</a>']
    if page > 1:
        links.append(f'<a href="{page - 1}">previous</a>')
    if page < pages:
        links.append(f'<a href="{page + 1}">next</a>')
    body = f"""<h2>Targets ({len(states)}), page {page} of {pages}</h2>
<p>{" &middot; ".join(links)}</p>
<table id="targets">{_TARGET_HEAD}<tbody>
{_target_rows(chunk, now, snapshot.stale_after, guard)}
</tbody></table>"""
    return _page(f"Nayax EV Exporter: targets, page {page}", info, body, root="../")
