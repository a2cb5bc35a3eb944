"""Command line: flags in the node_exporter / blackbox_exporter style, signals, --once, demo."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from exporter import __version__
from exporter.config import Config, ConfigError, load_config
from exporter.daemon import Exporter, Options
from exporter.demo import demo_config, start_simulator
from exporter.logs import FORMATS, LEVELS, SecretScrubber, configure
from exporter.malloc import tune_malloc
from exporter.server import ExporterHTTPServer, parse_listen_address
from exporter.targets import Shard, build_targets
from exporter.webconfig import WebConfig, load_web_config

DEFAULT_CONFIG_FILE = "config.yaml"
SHUTDOWN_GRACE = 3.0  # seconds; SIGTERM must end the process well within 5 s


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nayax-ev-exporter",
        description="Prometheus exporter for Nayax EV charging meters (Lynx API evDashboard).",
    )
    add = parser.add_argument
    add("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE, help="YAML config")
    add("--config.check", dest="config_check", action="store_true", help="validate and exit 0/1")
    add("--web.listen-address", dest="listen_address", default=":9877", help="HOST:PORT")
    add("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    add("--web.config.file", dest="web_config_file", default=None, help="TLS / basic auth")
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
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/", "/-/healthy"):
        parser.error("--web.telemetry-path must be an absolute path other than / and /-/*")
    try:
        args.shard = Shard.parse(args.shard)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    malloc_settings = tune_malloc(os.environ)  # before any worker thread exists
    scrubber = SecretScrubber()
    log = configure(args.log_level, args.log_format, scrubber)
    tuned = {k.lower().removeprefix("malloc_").rstrip("_"): v for k, v in malloc_settings.items()}
    log.debug("glibc malloc tuned", **tuned)

    simulator = None
    loader: Callable[[], Config]
    if args.demo:
        host, port = parse_listen_address(args.demo_simulator_address)
        simulator = start_simulator(host or "127.0.0.1", port)
        demo = demo_config(simulator)

        def loader() -> Config:
            return demo

        label = "(demo)"
    else:
        path = Path(args.config_file)

        def loader() -> Config:
            return load_config(path)

        label = str(path)

    if args.config_check:
        return _check(loader, args.shard)

    web_config: WebConfig | None = None
    try:
        if args.web_config_file:
            web_config = load_web_config(Path(args.web_config_file))
        exporter = Exporter(
            loader,
            log,
            scrubber,
            Options(
                telemetry_path=args.telemetry_path,
                shard=args.shard,
                config_label=label,
                spread=not args.once,
            ),
        )
    except ConfigError as error:
        for problem in error.errors:
            log.error("invalid configuration", problem=problem)
        return 1

    if args.once:
        return _once(exporter)

    try:
        server = ExporterHTTPServer(parse_listen_address(args.listen_address), exporter, web_config)
    except (OSError, ValueError) as exc:
        log.error("cannot listen", address=args.listen_address, error=str(exc))
        return 1

    stop = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def on_hup(signum: int, _frame: FrameType | None) -> None:
        reload_requested.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)

    exporter.start()
    server.serve_in_thread()
    scheme = "https" if web_config is not None and web_config.tls is not None else "http"
    host = args.listen_address.rsplit(":", 1)[0] or "localhost"
    url = f"{scheme}://{host}:{server.port}"
    log.info("listening", address=args.listen_address, url=url)
    if simulator is not None:
        print(f"Demo exporter:  {url}/", flush=True)
        print(f"Demo metrics:   {url}{args.telemetry_path}", flush=True)
        print(f"Lynx simulator: {simulator.url}/_sim/fleet", flush=True)

    while not stop.wait(0.2):
        if reload_requested.is_set():
            reload_requested.clear()
            log.info("reloading configuration", trigger="SIGHUP")
            exporter.reload()

    log.info("shutting down")
    stopper = threading.Thread(target=_shutdown, args=(server, exporter), daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_GRACE)  # hanging upstream sockets are daemons: not waited for
    if simulator is not None:
        simulator.stop()
    log.info("exporter stopped")
    return 0


def _shutdown(server: ExporterHTTPServer, exporter: Exporter) -> None:
    server.shutdown()
    server.server_close()
    exporter.stop()


def _check(loader: Callable[[], Config], shard: Shard) -> int:
    try:
        config = loader()
    except ConfigError as error:
        scrub = SecretScrubber()
        for problem in error.errors:
            print(f"error: {scrub(None, 'error', problem)}", file=sys.stderr)
        print(f"{len(error.errors)} problem(s) found", file=sys.stderr)
        return 1
    targets = build_targets(config, shard)
    machines = sum(len(a.machines) for a in config.actors)
    print(
        f"config OK: {len(config.actors)} actor(s), {machines} machine(s), "
        f"{len(config.windows)} window(s), {len(targets)} target(s)"
    )
    return 0


def _once(exporter: Exporter) -> int:
    """Poll every target once, print the exposition, exit 0 only if all are up."""
    exporter.poller.start()
    config = exporter.config
    budget = (config.lynx.timeout + config.lynx.retry_backoff_max) * (config.lynx.max_retries + 1)
    rounds = len(exporter.store.current().states) / max(1, config.lynx.max_concurrency)
    exporter.poller.wait_until_ready(timeout=budget + rounds * config.lynx.timeout)
    exporter.poller.stop()
    exporter.exposition.refresh()
    body, _ = exporter.exposition.serve(None, None)
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
    states = exporter.store.current().states.values()
    return 0 if states and all(s.up for s in states) else 1
