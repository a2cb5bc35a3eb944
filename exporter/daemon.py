"""The running exporter: owns the store, poller, exposition cache and reloads.

Reload is all-or-nothing: the new file is validated completely before anything
changes; an invalid one leaves the running config in place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector
from structlog.typing import FilteringBoundLogger

from exporter import __version__
from exporter.client import LynxClient
from exporter.collector import PollErrorsCollector, SelfCollector
from exporter.config import Config, ConfigError
from exporter.exposition import ExpositionCache
from exporter.landing import PageInfo, render_landing
from exporter.logs import SecretScrubber
from exporter.poller import Poller
from exporter.ratelimit import RateLimiter, TokenGate
from exporter.server import Response, Routes
from exporter.stats import Stats
from exporter.store import SnapshotStore
from exporter.targets import Shard, Target, build_targets

ConfigLoader = Callable[[], Config]


@dataclass(frozen=True)
class Options:
    telemetry_path: str = "/metrics"
    shard: Shard = field(default_factory=Shard)
    config_label: str = "(built-in)"
    spread: bool = True  # False for --once: poll everything at once
    render_min_gap: float = 1.0  # seconds; at least interval/20 (see _render_gap)


def secrets_of(config: Config) -> list[str]:
    tokens = [config.lynx.token] + [a.token for a in config.actors]
    return [t.reveal() for t in tokens if t is not None]


class Exporter(Routes):
    def __init__(
        self,
        load: ConfigLoader,
        logger: FilteringBoundLogger,
        scrubber: SecretScrubber,
        options: Options = Options(),
    ) -> None:
        self._load = load
        self._log = logger
        self._scrubber = scrubber
        self._options = options
        self.telemetry_path = options.telemetry_path
        self._reload_lock = threading.Lock()
        self.config = load()  # raises ConfigError: refuse to start
        scrubber.set(secrets_of(self.config))
        self.stats = Stats(started_at=time.time())
        self._token_gate = TokenGate()
        self._limiter = RateLimiter(self.config.lynx.rate_limit_per_second)
        targets = build_targets(self.config, options.shard)
        self.store = SnapshotStore(targets, self.config.poll.stale_after)
        self.poller = Poller(
            self.store,
            self.stats,
            logger,
            self._make_client,
            spread=options.spread,
        )
        self.poller.configure(self.config, targets)
        self.self_registry = CollectorRegistry(auto_describe=False)
        self.self_registry.register(
            SelfCollector(
                self.stats.view,
                version=__version__,
                shard=lambda: str(options.shard),
                target_count=lambda: len(self.store.current().states),
            )
        )
        self._actor_ids = actor_ids_of(targets)
        errors_registry = CollectorRegistry(auto_describe=False)
        errors_registry.register(PollErrorsCollector(self.stats.view, lambda: self._actor_ids))
        process_registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=process_registry)
        self.exposition = ExpositionCache(
            self.store,
            self.self_registry,
            errors_registry=errors_registry,
            errors_version=lambda: (self.stats.poll_errors_version, self._actor_ids),
            process_registry=process_registry,
            min_gap=self._render_gap,
        )

    def _render_gap(self) -> float:
        # Polls land spread over the whole interval; re-rendering more often than
        # every interval/20 shows no fresher data worth its CPU at a long interval.
        return max(self._options.render_min_gap, self.config.poll.interval / 20)

    def _make_client(self, config: Config) -> LynxClient:
        if config.lynx.rate_limit_per_second != self._limiter.rate:
            self._limiter = RateLimiter(config.lynx.rate_limit_per_second)
        return LynxClient(
            config.lynx,
            observer=self.stats.observe_request,
            rate_limiter=self._limiter,
            token_gate=self._token_gate,
            stop=self.poller.stop_event,
            version=__version__,
        )

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self.poller.start()
        self.exposition.start()
        self._log.info(
            "exporter started",
            version=__version__,
            targets=len(self.store.current().states),
            shard=str(self._options.shard),
            interval=self.config.poll.interval,
        )

    def stop(self) -> None:
        self.poller.stop()
        self.exposition.stop()

    def reload(self) -> Sequence[str]:
        """Re-read the config; on any error keep the running one."""
        with self._reload_lock:
            try:
                config = self._load()
            except ConfigError as error:
                self.stats.record_reload(False, time.time())
                for message in error.errors:
                    self._log.error("config reload failed", problem=message)
                return error.errors
            # Old tokens stay scrubbed too: requests carrying them may still be in flight.
            self._scrubber.set(secrets_of(config) + secrets_of(self.config))
            targets = build_targets(config, self._options.shard)
            self.poller.configure(config, targets)
            self._actor_ids = actor_ids_of(targets)
            self.config = config
            self.stats.record_reload(True, time.time())
            self._log.info("config reloaded", targets=len(targets))
            return ()

    # --- routes -----------------------------------------------------------------

    def metrics(self, accept: str | None, accept_encoding: str | None) -> Response:
        chunks, headers = self.exposition.serve_chunks(accept, accept_encoding)
        return Response(200, chunks, headers)

    def landing(self) -> Response:
        info = PageInfo(
            version=__version__,
            telemetry_path=self.telemetry_path,
            shard=str(self._options.shard),
            config_file=self._options.config_label,
            interval=self.config.poll.interval,
            base_url=self.config.lynx.base_url,
        )
        body = render_landing(info, self.store.current(), time.time())
        return Response(200, body, {"Content-Type": "text/html; charset=utf-8"})

    def ready(self) -> bool:
        # Ready when what a scrape serves (the rendered exposition, which trails
        # the store by up to the render debounce) has every target polled once.
        return self.exposition.rendered.ready


def actor_ids_of(targets: Sequence[Target]) -> tuple[int, ...]:
    """The actors this replica polls (its poll-error counters start at 0 for each)."""
    return tuple(sorted({target.actor_id for target in targets}))
