"""The virtual clock the poller's tests run on: time moves only when every thread
of the test waits on it, and never while one runs."""

from __future__ import annotations

import threading
import time

import pytest

from tests.virtual_time import VirtualClock, VirtualEvent, VirtualExecutor


def test_a_lone_sleep_moves_time_at_once_by_exactly_its_length() -> None:
    clock = VirtualClock(start=100.0, wall=5000.0)
    started = time.monotonic()
    clock.sleep(3600.0)
    assert (clock.monotonic(), clock.wall()) == (3700.0, 8600.0)
    assert time.monotonic() - started < 5.0  # an hour of virtual time, not of real time


def test_time_stands_still_while_a_thread_of_the_test_runs() -> None:
    clock = VirtualClock()
    seen: list[float] = []

    def busy() -> None:
        time.sleep(0.2)  # real work, not a wait on the clock
        seen.append(clock.monotonic())
        clock.sleep(1.0)
        seen.append(clock.monotonic())

    thread = threading.Thread(target=busy)
    thread.start()
    clock.sleep(10.0)
    thread.join()
    assert seen == [1000.0, 1001.0]  # the test's own sleep could not move time past it
    assert clock.monotonic() == 1010.0


def test_an_event_set_by_another_thread_wakes_its_waiter_at_that_instant() -> None:
    clock = VirtualClock()
    event = threading.Event()
    woke: list[tuple[bool, float]] = []
    waiter = threading.Thread(
        target=lambda: woke.append((clock.wait(event, 60.0), clock.monotonic()))
    )
    waiter.start()
    clock.sleep(3.0)
    event.set()
    clock.sleep(100.0)
    waiter.join()
    assert woke == [(True, 1003.0)]


def test_a_virtual_event_times_out_in_virtual_time() -> None:
    clock = VirtualClock()
    stop = VirtualEvent(clock)
    assert stop.wait(2.5) is False
    assert clock.monotonic() == 1002.5
    stop.set()
    assert stop.wait(2.5) is True and clock.monotonic() == 1002.5


def test_the_executor_runs_as_many_calls_at_once_as_it_has_workers() -> None:
    clock = VirtualClock()
    executor = VirtualExecutor(clock, 2)

    def job() -> float:
        clock.sleep(1.0)
        return clock.monotonic()

    futures = [executor.submit(job) for _ in range(5)]
    clock.run_until(lambda: all(f.done() for f in futures), timeout=10.0)
    executor.shutdown()
    assert sorted(f.result() for f in futures) == [1001.0, 1001.0, 1002.0, 1002.0, 1003.0]


def test_shutting_down_cancels_queued_calls_when_asked() -> None:
    clock = VirtualClock()
    executor = VirtualExecutor(clock, 1)
    first = executor.submit(clock.sleep, 1.0)
    queued = executor.submit(clock.sleep, 1.0)
    clock.run_until(first.running, timeout=1.0)
    executor.shutdown(wait=False, cancel_futures=True)
    clock.run_until(first.done, timeout=2.0)
    assert queued.cancelled() and first.result() is None
    with pytest.raises(RuntimeError):
        executor.submit(clock.sleep, 1.0)


def test_a_thread_blocked_outside_the_clock_fails_the_test_and_is_named() -> None:
    clock = VirtualClock(stall=0.3)
    release = threading.Event()
    blocked = threading.Thread(target=release.wait, name="blocked-elsewhere")
    blocked.start()
    try:
        with pytest.raises(AssertionError, match="blocked-elsewhere"):
            clock.sleep(1.0)
    finally:
        release.set()
        blocked.join()
