"""Polling in virtual time, end to end in one process: the real client, rate
limiter, token gate, poller, store and exposition, on a :class:`VirtualClock`,
against the simulator's own routes and faults answering through ``responses``
(no socket, so no real time between a request and its answer).

What it stands in for: the HTTP server of :class:`SimulatorServer` (its routes,
tokens and faults are the real ones; a fault other than a status is not played
here) and the wiring of :class:`exporter.app.Exporter`, which takes the real
clock. Tests of that wiring, of sockets and of the process run the daemon for
real (``tests/harness.py``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import responses
import structlog
import yaml
from requests import PreparedRequest

from exporter.config import Config, parse_config
from exporter.lynx.client import ATTEMPT_HEADER, LynxClient
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.metrics.collector import PollCollector
from exporter.metrics.exposition import ExpositionCache
from exporter.metrics.stats import Stats
from exporter.polling.plan import Plan
from exporter.polling.poller import Poller
from exporter.polling.store import SnapshotStore
from exporter.simulator import Fault, FaultKind, SimulatorServer
from exporter.simulator.context import ApiRequest
from exporter.simulator.replies import Reply, json_bytes
from exporter.simulator.routes import find, not_found
from exporter.simulator.server import RecordedRequest
from exporter.simulator.vendor import vendor_error
from exporter.targets import build_targets
from tests.harness import SeriesKey, parse_exposition
from tests.virtual_time import VirtualClock, VirtualEvent, VirtualExecutor

__all__ = ["VENDOR_URL", "VirtualDaemon", "VirtualVendor", "virtual_daemon"]

VENDOR_URL = "http://vendor.test"


class VirtualVendor:
    """The simulator's answers, in process: ``sim`` (never started) decides them,
    and every request is recorded at its virtual arrival, as the server records it."""

    def __init__(self, sim: SimulatorServer, clock: VirtualClock) -> None:
        self.sim = sim
        self._clock = clock
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def __call__(self, request: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(request.url or "")
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in query.items()}
        matched = find(split.path, lowered)
        authorization = request.headers.get("Authorization")
        arrived, wall = self._clock.monotonic(), self._clock.wall()
        reply, fault = not_found(), None
        if matched is not None:
            outcome = matched.answer(self.sim, ApiRequest("GET", lowered, authorization, wall))
            if isinstance(outcome, Reply):
                reply = outcome
            else:
                payload, taken = outcome
                reply = Reply(200, json_bytes(payload)) if taken is None else _status(taken)
                fault = None if taken is None else taken.kind.value
        headers = {"Content-Type": reply.content_type, **dict(reply.headers)}
        record = RecordedRequest(
            monotonic=arrived,
            wall=wall,
            path=split.path,
            query=query,
            actor_id=None if matched is None else matched.actor_id,
            machine=None if matched is None else matched.machine,
            authorization=authorization,
            status=reply.status,
            fault=fault,
            attempt=request.headers.get(ATTEMPT_HEADER),
            retry_after=headers.get("Retry-After"),
        )
        with self._lock:
            self._log.append(record)
        return reply.status, headers, reply.body


def _status(fault: Fault) -> Reply:
    """A status fault's answer (the only kind played in virtual time)."""
    if fault.kind is not FaultKind.STATUS:
        raise NotImplementedError(f"{fault.kind} is not played in virtual time")
    headers = () if fault.retry_after is None else (("Retry-After", fault.retry_after),)
    return vendor_error(fault.status, HTTPStatus(fault.status).phrase, *headers)


@dataclass
class VirtualDaemon:
    """What a test reads of the running daemon: the vendor's request log, the
    log events, and ``/metrics`` as a scrape would read it at the current instant."""

    clock: VirtualClock
    config: Config
    vendor: VirtualVendor
    poller: Poller
    store: SnapshotStore
    stats: Stats
    exposition: ExpositionCache
    logs: Sequence[Mapping[str, Any]]  # grows as the daemon logs

    def ready(self) -> bool:
        return self.store.current().ready

    def series(self) -> dict[SeriesKey, float]:
        self.exposition.refresh()
        body, _ = self.exposition.serve(None, None)
        return parse_exposition(body.decode("utf-8"))


@contextmanager
def virtual_daemon(
    document: Mapping[str, Any], sim: SimulatorServer, clock: VirtualClock
) -> Iterator[VirtualDaemon]:
    """Poll ``document`` (a config whose ``lynx.base_url`` is :data:`VENDOR_URL`)
    in virtual time, answered by ``sim``; stopped on leaving."""
    config = parse_config(yaml.safe_dump(dict(document), sort_keys=False), environ={})
    capture = structlog.testing.LogCapture()
    logger = structlog.wrap_logger(
        None, processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    stop = VirtualEvent(clock)
    stats = Stats(started_at=clock.wall())
    gate = TokenGate(clock.monotonic, max_hold=config.lynx.retry_after_max)
    client = LynxClient(
        config.lynx,
        observer=stats.observe_request,
        rate_limiter=RateLimiter(config.lynx.rate_limit_per_second, clock.monotonic),
        token_gate=gate,
        stop=stop,
        sleep_clock=clock.monotonic,
    )
    targets = build_targets(config)
    store = SnapshotStore(targets, config.poll.stale_after)
    poller = Poller(
        store,
        stats,
        logger,
        stop=stop,
        clock=clock,
        executor=lambda workers: VirtualExecutor(clock, workers),
    )
    stats.registry.register(PollCollector(lambda: stats.round_durations, lambda: poller.intervals))
    stats.track_actors(sorted({t.actor_id for t in targets}))
    exposition = ExpositionCache(
        store,
        stats.registry,
        errors_registry=stats.errors_registry,
        errors_version=lambda: stats.poll_errors_version,
        clock=clock.wall,
    )
    vendor = VirtualVendor(sim, clock)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(re.escape(VENDOR_URL) + "/.*"), vendor)
        poller.configure(Plan(config, {t.key: t for t in targets}, client, gate))
        poller.start()
        try:
            yield VirtualDaemon(
                clock, config, vendor, poller, store, stats, exposition, capture.entries
            )
        finally:
            poller.stop()
