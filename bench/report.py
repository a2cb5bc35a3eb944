"""Results: every figure as JSON (``bench/results/results-<timestamp>.json``) and
as markdown tables (``bench/results/latest.md``), with the verdict per target."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.machine import Machine
from bench.markdown import render_markdown
from bench.scenario import IdleResult, Settings
from bench.verdicts import SizeReport, verdicts


def write_results(
    directory: Path,
    stamp: str,
    *,
    settings: Settings,
    machine: Machine,
    sizes: Sequence[SizeReport],
    idles: Sequence[IdleResult],
    started_at: str,
    duration: float,
    argv: Sequence[str],
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    checks = verdicts(sizes, idles)
    document: dict[str, Any] = {
        "started_at": started_at,
        "duration_seconds": round(duration, 1),
        "argv": list(argv),
        "machine": asdict(machine),
        "settings": asdict(settings),
        "sizes": [asdict(s) for s in sizes],
        "idle": [asdict(i) for i in idles],
        "targets": [asdict(v) for v in checks],
    }
    json_path = directory / f"results-{stamp}.json"
    json_path.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    markdown = render_markdown(
        settings=settings,
        machine=machine,
        sizes=sizes,
        idles=idles,
        checks=checks,
        started_at=started_at,
        duration=duration,
        json_name=json_path.name,
    )
    md_path = directory / "latest.md"
    md_path.write_text(markdown, encoding="utf-8")
    return json_path, md_path
