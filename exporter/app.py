"""The running exporter: wires the store, poller, exposition cache and reloads.

Reload is all-or-nothing: the new file is validated completely before anything
changes; an invalid one leaves the running config in place. Every reload — from
SIGHUP or ``POST /-/reload`` — runs on one reload thread, one at a time, so the
main thread stays free to act on SIGTERM even while a large reload is parsed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector
from structlog.typing import FilteringBoundLogger

from exporter import __version__
from exporter.config import Config, ConfigError, LynxConfig
from exporter.logs import SecretScrubber
from exporter.lynx.client import LynxClient, RequestObserver
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.metrics.collector import (
    AccessTokenCollector,
    BudgetCollector,
    PollCollector,
    SelfCollector,
    token_expiries,
)
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.render_guard import RenderGuard
from exporter.metrics.stats import Stats
from exporter.polling.budget import notes, once_deadline, request_budget, warnings
from exporter.polling.plan import Plan, reusing
from exporter.polling.poller import Poller
from exporter.polling.store import SnapshotStore, discovered_machines
from exporter.targets import DISCOVERY, MachineInfo, Shard, Target, build_targets
from exporter.web.landing import PageInfo, render_landing, render_target_page

ConfigLoader = Callable[[], Config]
MAX_RENDER_GAP = 60.0  # seconds: even at a very long interval, render at least this often
# What a reload that failed other than by an invalid file reports (with the error's class).
RELOAD_ERROR = "the configuration could not be loaded"


@dataclass(frozen=True)
class Options:
    telemetry_path: str = "/metrics"
    shard: Shard = field(default_factory=Shard)
    config_label: str = "(built-in)"
    spread: bool = True  # False for --once: poll everything at once
    render_min_gap: float = 1.0  # seconds; at least interval/20 (see _render_gap)


@dataclass(frozen=True)
class OnceResult:
    """What ``--once`` prints and how it exits."""

    body: bytes  # the exposition, text format
    all_up: bool  # every target answered completely


def secrets_of(config: Config) -> list[str]:
    tokens = [config.lynx.token, config.lynx.refresh_token]
    tokens += [t for a in config.actors for t in (a.token, a.refresh_token)]
    return [t.reveal() for t in tokens if t is not None]


def make_client(
    lynx: LynxConfig,
    *,
    stop: threading.Event,
    rate_limiter: RateLimiter,
    token_gate: TokenGate,
    observer: RequestObserver,
    on_secret: Callable[[str], None] = lambda _text: None,
) -> LynxClient:
    """A client for one ``lynx`` section; everything it shares comes in as arguments."""
    return LynxClient(
        lynx,
        observer=observer,
        rate_limiter=rate_limiter,
        token_gate=token_gate,
        stop=stop,
        version=__version__,
        on_secret=on_secret,
    )


class Exporter:
    """Wires config, store, poller and exposition; is the web routes' Site."""

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
        self._stop = threading.Event()
        self._reloads = ThreadPoolExecutor(1, thread_name_prefix="reload")
        self.config = load()  # raises ConfigError: refuse to start
        scrubber.set(secrets_of(self.config))
        self.stats = Stats(started_at=time.time())
        self.render_guard = RenderGuard(logger, self.stats.count_poll_error)
        self._limiter = RateLimiter(self.config.lynx.rate_limit_per_second)
        targets = build_targets(self.config, options.shard)
        self.store = SnapshotStore(targets, self.config.poll.stale_after)
        self.poller = Poller(
            self.store,
            self.stats,
            logger,
            stop=self._stop,
            spread=options.spread,
            on_replan=self._replanned,
        )
        self._plan = self._plan_for(self.config, targets, None)
        self._budget = request_budget(self.config, targets)
        self.poller.configure(self._plan)
        self._actor_ids = actor_ids_of(targets)
        self.exposition = self._exposition()

    def _exposition(self) -> ExpositionCache:
        self.self_registry = self.stats.registry  # the counters; then the gauges below
        self.self_registry.register(
            SelfCollector(
                version=__version__,
                shard=lambda: str(self._options.shard),
                target_count=lambda: len(self.store.current().states),
            )
        )
        self.self_registry.register(
            PollCollector(lambda: self.stats.round_durations, lambda: self.poller.intervals)
        )
        self.stats.track_actors(self._actor_ids)
        self.self_registry.register(AccessTokenCollector(self._token_expiries))
        self.self_registry.register(BudgetCollector(self._budget_rates))
        process_registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=process_registry)
        return ExpositionCache(
            self.store,
            self.self_registry,
            errors_registry=self.stats.errors_registry,
            errors_version=lambda: self.stats.poll_errors_version,
            process_registry=process_registry,
            min_gap=self._render_gap,
            guard=self.render_guard,
            on_error=self._render_failed,
        )

    def _render_failed(self, error: BaseException) -> None:
        """(Render thread) a whole render failed: a scrape serves the last one."""
        self._log.error("rendering failed; serving the last rendering", error=type(error).__name__)

    def _budget_rates(self) -> tuple[float, float]:
        budget = self._budget  # one read: a reload or re-plan may swap it meanwhile
        return budget.rate_needed, budget.rate_limit

    def _token_expiries(self) -> Mapping[int, float]:
        plan = self._plan  # one read: a reload may swap it meanwhile
        return token_expiries(plan.refresh_tokens, plan.client.token_expiry)

    def _render_gap(self) -> float:
        # Polls land spread over the whole interval; re-rendering more often than
        # every interval/20 shows no fresher data worth its CPU at a long interval.
        gap = max(self._options.render_min_gap, self.config.poll.interval / 20)
        return min(gap, MAX_RENDER_GAP)

    def _plan_for(self, config: Config, targets: Sequence[Target], old: Plan | None) -> Plan:
        """The poller's plan. The client, and with it the 429 holds on tokens, is
        kept unless the ``lynx`` section or a token changed: a reload that
        changes them drops the holds. The daemon's plan re-plans itself when a
        machine listing changes (the poller applies it); ``--once``'s does not."""
        by_key = reusing(targets, old)
        retarget = self._retarget(config) if self._options.spread else None
        if (
            old is not None
            and old.config.lynx == config.lynx
            and secrets_of(old.config) == secrets_of(config)
        ):
            return Plan(config, by_key, old.client, old.gate, retarget)
        if config.lynx.rate_limit_per_second != self._limiter.rate:
            self._limiter = RateLimiter(config.lynx.rate_limit_per_second)
        gate = TokenGate(max_hold=config.lynx.retry_after_max)
        client = make_client(
            config.lynx,
            stop=self._stop,
            rate_limiter=self._limiter,
            token_gate=gate,
            observer=self.stats.observe_request,
            on_secret=self._scrubber.add,  # access tokens, as they are exchanged
        )
        return Plan(config, by_key, client, gate, retarget)

    def _retarget(
        self, config: Config
    ) -> Callable[[Mapping[int, Sequence[MachineInfo]]], Sequence[Target]]:
        shard = self._options.shard
        return lambda listings: build_targets(config, shard, listings)

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
        log_budget(self._log, self.config, self._plan.targets.values())

    def stop(self) -> None:
        self._reloads.shutdown(wait=False, cancel_futures=True)
        self.poller.stop()
        self.exposition.stop()

    def once(self) -> OnceResult:
        """Poll every target once, now; the exposition and whether all are up.
        With discovery, the machine lists are read first, then every machine."""
        listings = {k: t for k, t in self._plan.targets.items() if t.kind == DISCOVERY}
        if listings:
            self.poller.configure(replace(self._plan, targets=listings))
        self.poller.start()
        for _ in range(2):  # discovery, then everything with the machines it found
            deadline = once_deadline(self.config, len(self._plan.targets))
            self.poller.wait_until_ready(timeout=deadline)
            discovered = discovered_machines(self.store.current())
            targets = build_targets(self.config, self._options.shard, discovered)
            if not listings or {t.key for t in targets} == self.store.current().states.keys():
                break
            listings = {}
            self._plan = self._plan_for(self.config, targets, self._plan)
            self.poller.configure(self._plan)
        self.poller.stop()
        self.exposition.refresh()
        body, _ = self.exposition.serve(None, None)
        states = self.store.current().states.values()
        return OnceResult(body, bool(states) and all(s.up for s in states))

    # --- discovery: the machine lists change what is polled ------------------------

    def _replanned(self, plan: Plan) -> None:
        """(Scheduler thread) the poller re-planned for a changed machine listing."""
        self._plan = plan
        targets = tuple(plan.targets.values())
        self._actor_ids = actor_ids_of(targets)
        self._log.info("machine lists changed", targets=len(targets))
        self._check_budget(plan.config, targets)

    def _check_budget(self, config: Config, targets: Sequence[Target]) -> None:
        """Log the request budget when the targets changed it (a reload, or
        discovery growing or shrinking the fleet), with its warnings."""
        budget = request_budget(config, targets)
        if budget != self._budget:
            self._budget = budget
            log_budget(self._log, config, targets)

    # --- reload: one path, one at a time -----------------------------------------

    def request_reload(self, trigger: str) -> Future[Sequence[str]]:
        """Queue a reload (SIGHUP); the caller need not wait for it."""
        return self._reloads.submit(self._reload, trigger)

    def reload(self) -> Sequence[str]:
        """Reload now (``POST /-/reload``); returns the errors (empty on success)."""
        return self.request_reload("http").result()

    def _reload(self, trigger: str) -> Sequence[str]:
        """Re-read the config; on any failure keep the running one.

        Whatever fails — an invalid file (every problem with its key path), or
        anything else the load raises (MemoryError, RecursionError, an OSError,
        a bug) — is logged as ``config reload failed``, sets
        ``nayax_ev_config_last_reload_successful`` to 0 and is returned for
        ``POST /-/reload``'s 500; nothing running changes, since the new plan
        is built in full before anything is swapped. Of an unexpected error only
        its class is shown: its text may quote a file's content.

        The reload thread cannot block for good, so it needs no watchdog: every
        file is read through exporter/config/files.py (regular files only, checked
        before a non-blocking open, at most a capped size), the YAML is bounded
        (exporter/yamlload.py) and the rest is computation. Only a hung network
        file system could hold it, and a watchdog could then abandon the thread,
        not end it.
        """
        self._log.info("reloading configuration", trigger=trigger)
        try:
            config = self._load()
            discovered = discovered_machines(self.store.current())
            targets = build_targets(config, self._options.shard, discovered)
            plan = self._plan_for(config, targets, self._plan)
        except ConfigError as error:
            return self._reload_failed(error.errors)
        except Exception as error:  # no failure may end a reload unreported
            return self._reload_failed([f"{RELOAD_ERROR} ({type(error).__name__})"])
        # Old tokens stay scrubbed too: requests carrying them may still be in flight.
        self._scrubber.set(secrets_of(config) + secrets_of(self.config))
        self._plan = plan
        self.poller.configure(plan)
        self._actor_ids = actor_ids_of(targets)
        self.stats.track_actors(self._actor_ids)
        self.config = config
        self.stats.record_reload(True, time.time())
        self._log.info("config reloaded", targets=len(targets))
        self._check_budget(config, targets)
        return ()

    def _reload_failed(self, problems: Sequence[str]) -> Sequence[str]:
        self.stats.record_reload(False, time.time())
        for problem in problems:
            self._log.error("config reload failed", problem=problem)
        return problems

    # --- routes -----------------------------------------------------------------

    def metrics(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[tuple[bytes, ...], dict[str, str]]:
        return self.exposition.serve_chunks(accept, accept_encoding)

    def _page_info(self) -> PageInfo:
        return PageInfo(
            version=__version__,
            telemetry_path=self.telemetry_path,
            shard=str(self._options.shard),
            config_file=self._options.config_label,
            interval=self.config.poll.interval,
            base_url=self.config.lynx.base_url,
        )

    def landing(self) -> bytes:
        return render_landing(
            self._page_info(), self.store.current(), time.time(), self.render_guard
        )

    def targets(self, page: int) -> bytes:
        return render_target_page(
            self._page_info(), self.store.current(), time.time(), page, self.render_guard
        )

    def ready(self) -> bool:
        # Ready when what a scrape serves (the rendered exposition, which trails
        # the store by up to the render debounce) has every target polled once.
        return self.exposition.rendered.ready

    def healthy(self) -> bool:
        """The threads that poll and render are alive (a dead one is never silent)."""
        return self.poller.alive and self.exposition.alive


def actor_ids_of(targets: Sequence[Target]) -> tuple[int, ...]:
    """The actors this replica polls (its poll-error counters start at 0 for each)."""
    return tuple(sorted({target.actor_id for target in targets}))


def log_budget(log: FilteringBoundLogger, config: Config, targets: Iterable[Target]) -> None:
    """The request budget as log fields; a warning when a round cannot fit."""
    budget = request_budget(config, targets)
    log.info(
        "request budget",
        targets=dict(budget.targets),
        requests_per_interval=budget.requests,
        interval=budget.interval,
        rate_needed=round(budget.rate_needed, 3),
        rate_limit=budget.rate_limit,
        effective_round=budget.round,
    )
    for text in notes(budget):
        log.info("request budget note", note=text)
    for text in warnings(budget):
        log.warning("polling over budget", round=budget.round, problem=text)
