"""Staleness: a failing target keeps publishing its last values until
``poll.stale_after``, then its data series vanish (``target_up`` and
``target_last_success_timestamp_seconds`` stay), and they return on recovery.

Real exporter process, real simulator; ``/metrics`` is scraped continuously so the
moment the values vanish is pinned from both sides.
"""

from __future__ import annotations

import time
from pathlib import Path

from exporter.simulator import Fault, FaultKind, SimulatorServer
from tests.harness import running_exporter, wait_for, write_config
from tests.test_fault_matrix import (
    TOKEN_AFFECTED,
    TOKEN_CONTROL,
    Scraper,
    TargetId,
    actor_entry,
    expected_values,
    fleet_for_tests,
    last_success,
    matrix_config,
    published,
    target_up,
    values_match,
)

STALE_AFTER = 4.0  # leaves room between "fault visible" and "stale" on a loaded machine
RENDER_LAG = 1.5  # the exposition re-renders at most once a second, plus a scrape


def test_failed_target_keeps_values_until_stale_then_they_vanish_and_return(
    tmp_path: Path,
) -> None:
    fleet = fleet_for_tests()
    affected, control = fleet.actor_ids()
    targets = {
        actor: [TargetId(actor, ""), TargetId(actor, str(fleet.machines(actor)[0].id))]
        for actor in (affected, control)
    }
    truth = {t: expected_values(fleet, t) for ts in targets.values() for t in ts}
    tokens = {affected: TOKEN_AFFECTED, control: TOKEN_CONTROL}
    with SimulatorServer(fleet, tokens=tokens) as simulator:
        config = matrix_config(
            simulator.url,
            [
                actor_entry(fleet, affected, TOKEN_AFFECTED, "Affected"),
                actor_entry(fleet, control, TOKEN_CONTROL, "Control"),
            ],
        )
        config["poll"]["stale_after"] = f"{STALE_AFTER:g}s"
        path = write_config(tmp_path / "config.yaml", config)
        with running_exporter(path) as exporter, Scraper(exporter) as scraper:

            def all_up() -> bool:
                series = exporter.series()
                return all(
                    target_up(series, t) == 1.0 and values_match(published(series, t), truth[t])
                    for t in truth
                )

            wait_for(all_up, timeout=15, what="every target up")
            simulator.add_fault(Fault(FaultKind.STATUS, status=503, actor_id=affected))
            wait_for(
                lambda: all(target_up(exporter.series(), t) == 0.0 for t in targets[affected]),
                timeout=10,
                what="affected targets down",
            )
            fault_seen = time.monotonic()

            def vanished() -> bool:
                series = exporter.series()
                return all(
                    all(v is None for v in published(series, t).values()) for t in targets[affected]
                )

            wait_for(vanished, timeout=STALE_AFTER + 5, what="stale values gone")
            # Watch the stale state for a little longer: nothing comes back by itself.
            stale_watch_from = len(scraper.scrapes)
            wait_for(
                lambda: len(scraper.scrapes) >= stale_watch_from + 25,  # > RENDER_LAG
                timeout=10,
                what="more scrapes",
            )
            cleared = time.monotonic()
            simulator.clear_faults()
            wait_for(all_up, timeout=15, what="recovery with true values")
            assert exporter.process is not None and exporter.process.poll() is None

    scraper.assert_always_answered()
    # Scrapes sent after the fault showed and before it was cleared.
    faulty = [s for s in scraper.scrapes if fault_seen <= s.at < cleared and s.series]
    assert faulty
    for target in targets[affected]:
        # The last success is frozen at the last good poll, and always published.
        successes = {last_success(s.series, target) for s in faulty}
        assert len(successes) == 1, successes
        (last_good,) = successes
        assert last_good is not None
        stale_at = last_good + STALE_AFTER
        for scrape in faulty:
            assert target_up(scrape.series, target) == 0.0
            values = published(scrape.series, target)
            if all(v is None for v in values.values()):
                # Gone only once stale_after has passed since the last success.
                # (By the time the answer was complete: a render may land mid-scrape.)
                assert scrape.wall + scrape.seconds >= stale_at, (scrape, stale_at)
            else:
                assert values_match(values, truth[target]), values  # kept as they were
                assert scrape.wall <= stale_at + RENDER_LAG
        # Kept right up to the end: a scrape shortly before stale_at still had them.
        kept = [
            s.wall
            for s in faulty
            if s.wall >= stale_at - RENDER_LAG
            and not all(v is None for v in published(s.series, target).values())
        ]
        assert kept, "values vanished long before stale_after"
        # And once gone they stay gone until the target recovers.
        gone = [s for s in faulty if s.wall >= stale_at + RENDER_LAG]
        assert gone and all(
            all(v is None for v in published(s.series, target).values()) for s in gone
        )
    for target in targets[control]:  # the control never went stale
        for scrape in faulty:
            assert target_up(scrape.series, target) == 1.0
            assert values_match(published(scrape.series, target), truth[target])
