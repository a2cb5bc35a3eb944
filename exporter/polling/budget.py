"""The request budget: how many requests a round needs and how long it really takes. Pure.

One round polls every target once (one request each, retries aside). It fits in
``poll.interval`` only if ``lynx.rate_limit_per_second`` allows that many requests
in one interval; otherwise each target is polled once per *effective round*
(targets / rate), fairly, and the user is told so with ways out. How long a round
takes when the API is slow is bounded by ``max_concurrency`` requests in flight,
each taking up to ``lynx.timeout``: the worst case is shown as a note.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.config import Config
from exporter.targets import Target


@dataclass(frozen=True)
class Budget:
    targets: Mapping[str, int]  # per request kind
    windows: int
    interval: float  # poll.interval, seconds
    rate_limit: float  # requests per second; 0 = unlimited
    concurrency: int
    timeout: float
    # Requests per second all targets need, each at its own interval (machine
    # status and discovery are polled less often than poll.interval; a discovery
    # counts one request per listing, whatever its number of pages).
    per_second: float = 0.0

    @property
    def requests(self) -> int:
        """Targets (one request per poll each, retries aside)."""
        return sum(self.targets.values())

    @property
    def rate_needed(self) -> float:
        """Requests per second polling every target on time needs."""
        return self.per_second or self.requests / self.interval

    @property
    def round(self) -> float:
        """The effective round: the interval, or longer when the rate limit cannot carry it."""
        if self.rate_limit <= 0:
            return self.interval
        return max(self.interval, self.interval * self.rate_needed / self.rate_limit)

    @property
    def over_budget(self) -> bool:
        return self.round > self.interval

    @property
    def worst_round(self) -> float:
        """A round's length if every request took the whole ``lynx.timeout``."""
        return max(self.round, math.ceil(self.requests / self.concurrency) * self.timeout)


def request_budget(config: Config, targets: Iterable[Target]) -> Budget:
    """Pure."""
    targets = list(targets)
    kinds = Counter(target.kind for target in targets)
    interval = config.poll.interval
    per_second = sum(1.0 / (t.interval or interval) for t in targets)
    return Budget(
        targets=dict(sorted(kinds.items())),
        windows=len(config.windows),
        interval=config.poll.interval,
        rate_limit=config.lynx.rate_limit_per_second,
        concurrency=config.lynx.max_concurrency,
        timeout=config.lynx.timeout,
        per_second=per_second,
    )


def summary(budget: Budget) -> str:
    """Pure: one line for the log and ``--config.check``."""
    kinds = ", ".join(f"{count} {kind}" for kind, count in budget.targets.items()) or "0"
    limit = f"{budget.rate_limit:g}/s" if budget.rate_limit > 0 else "unlimited"
    return (
        f"request budget: targets {kinds}; polling each once per its interval "
        f"(poll {budget.interval:g}s) needs {budget.rate_needed:.2f} requests/s "
        f"(rate limit {limit}); effective round {budget.round:g}s"
    )


def warnings(budget: Budget) -> list[str]:
    """Pure: a round that cannot fit in the interval, and how to fix it."""
    found = []
    if budget.over_budget:
        shards = math.ceil(budget.round / budget.interval)
        found.append(
            f"lynx.rate_limit_per_second {budget.rate_limit:g} cannot carry a round of "
            f"{budget.requests} requests in poll.interval {budget.interval:g}s: every "
            f"target is polled once per effective round of {budget.round:g}s. To fix: "
            f"set poll.interval to at least {math.ceil(budget.round):d}s, poll fewer "
            f"windows ({budget.windows} now), raise the rate limit to "
            f"{math.ceil(budget.rate_needed * 100) / 100:g}/s if your API allowance "
            f"permits, or split over {shards} or more shards (--shard) if each has its "
            "own allowance"
        )
    return found


def notes(budget: Budget) -> list[str]:
    """Pure: what could stretch a round beyond the budget (informational)."""
    found = []
    if budget.worst_round > max(budget.round, budget.interval):
        found.append(
            f"if the API answered only at lynx.timeout ({budget.timeout:g}s), "
            f"lynx.max_concurrency {budget.concurrency} would stretch a round to "
            f"{budget.worst_round:g}s; raise max_concurrency if answers are slow"
        )
    return found


def once_deadline(config: Config, targets: int) -> float:
    """Pure: how long ``--once`` waits for every target before giving up."""
    lynx = config.lynx
    one_poll = (lynx.timeout + lynx.retry_backoff_max) * (lynx.max_retries + 1)
    rounds = math.ceil(targets / lynx.max_concurrency) * lynx.timeout
    paced = targets / lynx.rate_limit_per_second if lynx.rate_limit_per_second > 0 else 0.0
    return one_poll + rounds + paced
