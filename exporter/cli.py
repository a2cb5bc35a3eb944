"""Command line: flags in the node_exporter / blackbox_exporter style, signals, --once, demo."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from structlog.typing import FilteringBoundLogger

from exporter import __version__
from exporter.app import Exporter, Options
from exporter.config import DEFAULT_LISTEN_ADDRESS, Config, ConfigError, load_config
from exporter.config.web import WebConfig, load_web_config
from exporter.logs import FORMATS, LEVELS, SecretScrubber, configure
from exporter.polling.budget import notes, request_budget, summary, warnings
from exporter.signals import Signals
from exporter.targets import Shard, build_targets
from exporter.web.routes import Routes
from exporter.web.server import DEFAULT_MAX_CONNECTIONS, ExporterHTTPServer, parse_listen_address

DEFAULT_CONFIG_FILE = "config.yaml"
DEMO_LISTEN_ADDRESS = "127.0.0.1:9877"
SHUTDOWN_GRACE = 3.0  # seconds; SIGTERM must end the process well within 5 s


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nayax-ev-exporter",
        description="Prometheus exporter for Nayax EV charging meters (Lynx API evDashboard).",
    )
    add = parser.add_argument
    add("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE, help="YAML config")
    add("--config.check", dest="config_check", action="store_true", help="validate and exit 0/1")
    add(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help=f"HOST:PORT (default {DEFAULT_LISTEN_ADDRESS}; with --demo {DEMO_LISTEN_ADDRESS})",
    )
    add("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    add("--web.config.file", dest="web_config_file", default=None, help="TLS / basic auth")
    add(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload (off: reload with SIGHUP only)",
    )
    add(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="concurrent HTTP connections; over it the longest-idle one is closed",
    )
    add("--log.level", dest="log_level", choices=LEVELS, default="info")
    add("--log.format", dest="log_format", choices=FORMATS, default="logfmt")
    add("--once", action="store_true", help="poll every target once, print metrics, exit")
    add("--shard", default="0/1", help="INDEX/COUNT: poll only this replica's share")
    add("--demo", action="store_true", help="run against an embedded Lynx simulator")
    add(
        "--demo.simulator-address",
        dest="demo_simulator_address",
        default="127.0.0.1:0",
        help="where the demo's simulator listens (port 0 = any free port)",
    )
    add("--version", action="version", version=f"nayax-ev-exporter {__version__}")
    args = parser.parse_args(argv)
    if args.listen_address is None:  # the demo is for one person's browser: loopback
        args.listen_address = DEMO_LISTEN_ADDRESS if args.demo else DEFAULT_LISTEN_ADDRESS
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/", "/-/healthy"):
        parser.error("--web.telemetry-path must be an absolute path other than / and /-/*")
    if args.max_connections < 1:
        parser.error("--web.max-connections must be at least 1")
    try:
        args.shard = Shard.parse(args.shard)
    except ValueError as exc:
        parser.error(str(exc))
    return args


class Simulator(Protocol):
    """The demo's embedded Lynx simulator, as the command line sees it."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Source:
    """Where the config comes from: a file, or the demo's embedded simulator."""

    load: Callable[[], Config]
    label: str
    simulator: Simulator | None = None


def main(argv: Sequence[str] | None = None, signals: Signals | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["report"]:  # `report uptime ...`: a one-shot command, plain signals
        if signals is not None:
            signals.restore_defaults()
        from exporter.report.command import main as report  # noqa: PLC0415 - only when asked

        return report(arguments[1:])
    args = parse_args(argv)
    if signals is None:
        signals = Signals().install()
    if args.config_check or args.once:
        signals.restore_defaults()
    scrubber = SecretScrubber()
    log = configure(args.log_level, args.log_format, scrubber)
    _log_thread_deaths(log)
    source = _source(args)
    try:
        if args.config_check:
            return _check(source.load, args.shard, args.web_config_file)
        if args.once:
            return _once(args, source, log, scrubber)
        return _serve(args, source, log, scrubber, signals)
    finally:
        if source.simulator is not None:
            source.simulator.stop()


def _source(args: argparse.Namespace) -> Source:
    if args.demo:
        # Only the demo loads the simulator: a real start never imports it.
        from exporter.demo import demo_config, start_simulator  # noqa: PLC0415

        host, port = parse_listen_address(args.demo_simulator_address)
        simulator = start_simulator(host or "127.0.0.1", port)
        demo = demo_config(simulator)
        return Source(lambda: demo, "(demo)", simulator)
    path = Path(args.config_file)
    return Source(lambda: load_config(path), str(path))


def _log_thread_deaths(log: FilteringBoundLogger) -> None:
    """A background thread that dies says so in the log (and /-/healthy turns 503)."""

    def hook(hook_args: threading.ExceptHookArgs) -> None:
        name = hook_args.thread.name if hook_args.thread is not None else "?"
        log.error("background thread died", thread=name, error=repr(hook_args.exc_value))

    threading.excepthook = hook


def _options(args: argparse.Namespace, source: Source, *, once: bool) -> Options:
    return Options(
        telemetry_path=args.telemetry_path,
        shard=args.shard,
        config_label=source.label,
        spread=not once,
    )


def _invalid(log: FilteringBoundLogger, error: ConfigError) -> int:
    for problem in error.errors:
        log.error("invalid configuration", problem=problem)
    return 1


def _once(
    args: argparse.Namespace, source: Source, log: FilteringBoundLogger, scrubber: SecretScrubber
) -> int:
    """Poll every target once, now; print the exposition; exit 0 only if all are up."""
    try:
        exporter = Exporter(source.load, log, scrubber, _options(args, source, once=True))
    except ConfigError as error:
        return _invalid(log, error)
    result = exporter.once()
    sys.stdout.buffer.write(result.body)
    sys.stdout.flush()
    return 0 if result.all_up else 1


T = TypeVar("T")


def _unless_stopped(build: Callable[[], T], stop: threading.Event) -> T | None:
    """``build()`` in a helper thread, so SIGTERM is acted on while it runs (a
    token file that blocks, a huge config); None when stopped first."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(build())
        except BaseException as exc:  # handed to the main thread below
            failure.append(exc)

    worker = threading.Thread(target=work, name="start-up", daemon=True)
    worker.start()
    while worker.is_alive():
        if stop.wait(0.1):
            return None
    if failure:
        raise failure[0]
    return outcome[0]


def _serve(
    args: argparse.Namespace,
    source: Source,
    log: FilteringBoundLogger,
    scrubber: SecretScrubber,
    signals: Signals,
) -> int:
    def build() -> tuple[Exporter, WebConfig | None]:
        web = load_web_config(Path(args.web_config_file)) if args.web_config_file else None
        return Exporter(source.load, log, scrubber, _options(args, source, once=False)), web

    try:
        built = _unless_stopped(build, signals.stop)
    except ConfigError as error:
        return _invalid(log, error)
    if built is None:
        log.info("stopped during start-up")
        return 0
    exporter, web_config = built
    try:
        routes = Routes(
            exporter, telemetry_path=args.telemetry_path, enable_lifecycle=args.enable_lifecycle
        )
        server = ExporterHTTPServer(
            parse_listen_address(args.listen_address),
            routes,
            web_config,
            max_connections=args.max_connections,
        )
    except (OSError, ValueError) as exc:
        log.error("cannot listen", address=args.listen_address, error=str(exc))
        return 1
    exporter.start()
    server.serve_in_thread()
    _announce(args, log, server, web_config, source.simulator)
    while not signals.stop.wait(0.2):
        if signals.reload.is_set():
            signals.reload.clear()
            exporter.request_reload("SIGHUP")  # on the reload thread: SIGTERM stays prompt
    log.info("shutting down")
    stopper = threading.Thread(target=_shutdown, args=(server, exporter), daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_GRACE)  # hanging upstream sockets are not waited for
    log.info("exporter stopped")
    return 0


def _announce(
    args: argparse.Namespace,
    log: FilteringBoundLogger,
    server: ExporterHTTPServer,
    web_config: WebConfig | None,
    simulator: Simulator | None,
) -> None:
    scheme = "https" if web_config is not None and web_config.tls is not None else "http"
    host = args.listen_address.rsplit(":", 1)[0] or "localhost"
    url = f"{scheme}://{host}:{server.port}"
    log.info("listening", address=args.listen_address, url=url)
    if simulator is not None:
        print(f"Demo exporter:  {url}/", flush=True)
        print(f"Demo metrics:   {url}{args.telemetry_path}", flush=True)
        print(f"Lynx simulator: {simulator.url}/_sim/fleet", flush=True)


def _shutdown(server: ExporterHTTPServer, exporter: Exporter) -> None:
    server.shutdown()
    server.server_close()
    exporter.stop()


def _check(loader: Callable[[], Config], shard: Shard, web_config_file: str | None) -> int:
    problems: list[str] = []
    config: Config | None = None
    try:
        config = loader()
    except ConfigError as error:
        problems.extend(error.errors)
    if web_config_file:  # --web.config.file is checked too, its errors prefixed
        try:
            load_web_config(Path(web_config_file))
        except ConfigError as error:
            problems.extend(f"{web_config_file}: {problem}" for problem in error.errors)
    if problems or config is None:
        scrub = SecretScrubber()
        for problem in problems:
            print(f"error: {scrub(None, 'error', problem)}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    targets = build_targets(config, shard)
    machines = sum(len(a.machines) for a in config.actors)
    print(
        f"config OK: {len(config.actors)} actor(s), {machines} machine(s), "
        f"{len(config.windows)} window(s), {len(targets)} target(s)"
    )
    budget = request_budget(config, targets)
    print(summary(budget))
    for text in warnings(budget):
        print(f"warning: {text}")
    for text in notes(budget):
        print(f"note: {text}")
    return 0
