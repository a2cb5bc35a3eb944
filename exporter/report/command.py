"""``nayax-ev-exporter report uptime``: the command line of the uptime report.

Exit codes: 0 the report was written; 1 Prometheus unreachable, refusing or a
query failed, or the output could not be written (nothing is written); 2 usage:
a bad flag, or an invalid ``--http.config.file`` / ``--excluded`` file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from exporter.config.validate import ConfigError, parse_duration
from exporter.report.collect import collect, list_fleet
from exporter.report.excluded import ExcludedWindow, charger_windows, load_excluded, unmatched
from exporter.report.httpconfig import HTTPSettings, load_http_config
from exporter.report.periods import Month, trailing_twelve
from exporter.report.plan import DEFAULT_MAX_POINTS, METRIC, MIN_MAX_POINTS
from exporter.report.progress import Progress
from exporter.report.promapi import PrometheusAPI, PrometheusError, base_url
from exporter.report.render import to_csv, to_json
from exporter.report.rows import build_rows
from exporter.report.uptime import UnknownMinutes

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_THRESHOLD = "15m"
MAX_CONCURRENCY = 16


def _duration(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not low <= seconds <= high or seconds != int(seconds):
            raise argparse.ArgumentTypeError(
                f"must be whole seconds between {low:g}s and {high:g}s"
            )
        return seconds

    return parse


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError("must be an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nayax-ev-exporter report",
        description="Reports computed from a Prometheus server's history.",
    )
    reports = parser.add_subparsers(dest="report", required=True, metavar="REPORT")
    uptime = reports.add_parser(
        "uptime",
        help="charger communication uptime per month, 23 CFR 680.116(b)",
        description=(
            "Per charger and month of the trailing twelve, and for the twelve together: "
            "minutes observed, unknown, in outage and excluded, and the uptime percentage. "
            "Communication uptime: from keep-alives, not from energy dispensed."
        ),
    )
    add = uptime.add_argument
    add("--prometheus.url", dest="url", required=True, help="e.g. http://prometheus:9090")
    add("--http.config.file", dest="http_config", type=Path, help="basic auth, token, TLS")
    add("--month", type=_month, help="YYYY-MM, the last month reported (default: last month)")
    add("--format", choices=("csv", "json"), default="csv")
    add("--output", type=Path, help="write here instead of stdout")
    add("--excluded", type=Path, help="YAML file of excluded windows")
    add(
        "--threshold",
        type=_duration(60, 7 * 86400),
        default=parse_duration(DEFAULT_THRESHOLD),
        help=f"a minute is communicating when the last keep-alive is at most this old "
        f"(default {DEFAULT_THRESHOLD})",
    )
    add(
        "--unknown",
        choices=[policy.value for policy in UnknownMinutes],
        default=UnknownMinutes.OUTAGE.value,
        help="minutes without data: count as outage (default), or exclude from the period",
    )
    add("--query.timeout", dest="timeout", type=_duration(1, 3600), default=120.0)
    add(
        "--query.max-points",
        dest="max_points",
        type=_bounded_int(MIN_MAX_POINTS, 1_000_000_000),
        default=DEFAULT_MAX_POINTS,
        help="series x minutes one query may evaluate",
    )
    add(
        "--query.concurrency",
        dest="concurrency",
        type=_bounded_int(1, MAX_CONCURRENCY),
        default=2,
        help="queries in flight at once",
    )
    return parser


def main(argv: Sequence[str], *, now: datetime | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    moment = now or datetime.now(UTC)
    last = args.month or Month.containing(moment).previous()
    if last.end > moment.timestamp():
        parser.error(f"--month {last.label} has not ended yet; reports cover whole months")
    try:
        url = base_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    if args.output is not None and (
        args.output.is_dir() or not os.access(args.output.parent, os.W_OK)
    ):
        parser.error(f"--output: cannot write the file {args.output}")
    try:
        settings = load_http_config(args.http_config) if args.http_config else HTTPSettings()
        windows = load_excluded(args.excluded) if args.excluded else ()
    except ConfigError as error:
        for problem in error.errors:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if settings.insecure_skip_verify:
        print("warning: TLS certificates are not verified (insecure_skip_verify)", file=sys.stderr)
    api = PrometheusAPI(url, settings, args.timeout)
    try:
        text = _report(args, api, trailing_twelve(last), windows)
    except PrometheusError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for warning in sorted(api.warnings):  # e.g. a partial answer from remote storage
            print(f"warning: Prometheus: {warning}", file=sys.stderr)
    try:
        _write(text, args.output)
    except OSError as exc:  # a full disk: the report is lost, the old file kept
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _report(
    args: argparse.Namespace,
    api: PrometheusAPI,
    months: tuple[Month, ...],
    windows: tuple[ExcludedWindow, ...],
) -> str:
    fleet, skipped = list_fleet(api, months)
    if skipped:
        print(
            f"warning: {skipped} {METRIC} series lack actor_id or machine_id; skipped",
            file=sys.stderr,
        )
    if not fleet:
        print(
            f"warning: no {METRIC} series from {months[0].label} to {months[-1].label}",
            file=sys.stderr,
        )
    chargers = [member.charger for member in fleet]
    for window in unmatched(windows, chargers):
        print(f"warning: {window.key}: no such charger or actor in the report", file=sys.stderr)
    excluded = {c: charger_windows(windows, c) for c in chargers}
    progress = Progress(sys.stderr)
    try:
        counts = collect(
            api,
            fleet,
            months,
            excluded,
            threshold=int(args.threshold),
            max_points=args.max_points,
            concurrency=args.concurrency,
            planned=progress.start,
            done=progress.advance,
        )
    finally:
        progress.finish()
    unknown = UnknownMinutes(args.unknown)
    rows = build_rows(fleet, months, counts, excluded, unknown)
    if args.format == "csv":
        return to_csv(rows)
    parameters = {
        "first_month": months[0].label,
        "last_month": months[-1].label,
        "threshold_seconds": int(args.threshold),
        "unknown_minutes": unknown.value,
        "excluded_windows": len(windows),
    }
    return to_json(rows, parameters)


def _write(text: str, output: Path | None) -> None:
    """To stdout, or to the file through a temporary one: a failed run never
    leaves half a report where the last good one was."""
    data = text.encode("utf-8")
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    descriptor, temporary = tempfile.mkstemp(dir=output.parent, prefix=".report-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as a plain open() would have created it
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
