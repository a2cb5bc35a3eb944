"""Scraping ``/metrics`` as Prometheus does: one keep-alive connection per
encoding, latency from sending the request to reading the last body byte."""

from __future__ import annotations

import gzip
import http.client
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyStats:
    """Scrape latency (request sent → last body byte read), milliseconds."""

    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes: int  # body bytes of the last scrape, as sent (gzip: compressed)
    series: int  # sample lines of the last scrape's exposition


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (with 30 samples, p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def sample_lines(body: bytes) -> int:
    """The series of an exposition: its lines that are neither comments nor empty. Pure."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


class Scraper:
    """One keep-alive connection, as Prometheus keeps one per target."""

    def __init__(self, port: int, gzip: bool) -> None:
        self._port = port
        self._headers = {"Accept-Encoding": "gzip"} if gzip else {}
        self._connection: http.client.HTTPConnection | None = None
        self.durations: list[float] = []
        self.errors = 0
        self._last = b""
        self._last_gzipped = False

    def scrape(self) -> None:
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        started = time.perf_counter()
        try:
            self._connection.request("GET", "/metrics", headers=self._headers)
            response = self._connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.errors += 1
            self._connection.close()
            self._connection = None
            return
        self.durations.append(time.perf_counter() - started)
        if response.status != 200:
            self.errors += 1
        self._last = body
        self._last_gzipped = response.getheader("Content-Encoding") == "gzip"

    def stats(self) -> LatencyStats:
        ms = [d * 1000 for d in self.durations] or [math.nan]
        plain = gzip.decompress(self._last) if self._last_gzipped else self._last
        return LatencyStats(
            count=len(self.durations),
            errors=self.errors,
            p50_ms=statistics.median(ms),
            p99_ms=percentile(ms, 0.99),
            max_ms=max(ms),
            bytes=len(self._last),
            series=sample_lines(plain),
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def scrape_for(
    port: int, seconds: float, period: float = 1.0, seed: int = 5
) -> tuple[LatencyStats, LatencyStats]:
    """A plain scrape in the first half of every ``period`` and a gzip one in the
    second, each at a random moment within its half (seeded: runs repeat).

    Not on a fixed grid: the exporter renders on a fixed period too (every
    max(1 s, interval/20)), and both grids start from the same reload, so at fixed
    moments every scrape of a run met a render or none did, and the slowest of 30
    measured that phase, not the exporter."""
    rng = random.Random(seed)
    plain, gzipped = Scraper(port, gzip=False), Scraper(port, gzip=True)
    started = time.monotonic()
    half = period / 2
    tick = 0
    try:
        while (due := started + tick * period) < started + seconds:
            sleep_until(due + rng.uniform(0, half * 0.8))
            plain.scrape()
            sleep_until(due + half + rng.uniform(0, half * 0.8))
            gzipped.scrape()
            tick += 1
    finally:
        plain.close()
        gzipped.close()
    return plain.stats(), gzipped.stats()


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)
