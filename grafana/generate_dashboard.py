#!/usr/bin/env python3
"""Generate the Grafana dashboards of nayax-ev-exporter.

Usage::

    python grafana/generate_dashboard.py          # rewrite grafana/dashboards/*.json
    python grafana/generate_dashboard.py --check  # exit 1 if a file is stale

Two dashboards: "Nayax EV" (uid nayax-ev, nayax_ev_dashboard.py) and "Charger
uptime" (uid nayax-ev-uptime, uptime_dashboard.py). They are written with
Grafana's own dashboards-as-code library, grafana-foundation-sdk (a build-time
tool, in the `test` extras of pyproject.toml, not a runtime dependency), pinned
to its build for Grafana 11.1, the version docker-compose.yml runs. The output
is deterministic, and ``tests/test_dashboard.py`` regenerates it and compares it
with the committed files. Edit these scripts, never the JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import nayax_ev_dashboard
import uptime_dashboard
from dashboard_kit import render
from grafana_foundation_sdk.builders.dashboard import Dashboard

OUTPUT_DIR = Path(__file__).resolve().parent / "dashboards"
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "nayax-ev.json": nayax_ev_dashboard.build,
    "nayax-ev-uptime.json": uptime_dashboard.build,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.output_dir / name
        wanted = render(build())
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == wanted:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(wanted, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}: run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
