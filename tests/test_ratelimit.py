"""Pacing as a unit: the rate limiter's spacing and the token gate's capped holds."""

from __future__ import annotations

import itertools
import threading

import pytest

from exporter.lynx.ratelimit import RateLimiter, TokenGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_evenly_with_slack() -> None:
    clock = Clock()
    limiter = RateLimiter(4.0, clock=clock)
    slots = [limiter.reserve() for _ in range(5)]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert slots[0] == 1000.0
    assert gaps == pytest.approx([RateLimiter.SLACK / 4.0] * 4)
    assert limiter.rate == 4.0


def test_an_idle_limiter_does_not_bank_a_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, clock=clock)
    limiter.reserve()
    clock.now += 60.0  # a minute idle
    first, second = limiter.reserve(), limiter.reserve()
    assert first == clock.now and second - first == pytest.approx(RateLimiter.SLACK / 2.0)


def test_unlimited_never_waits() -> None:
    limiter = RateLimiter(0)
    assert limiter.rate == 0.0
    assert limiter.acquire(threading.Event())


def test_acquire_gives_up_when_stopped() -> None:
    clock = Clock()
    limiter = RateLimiter(0.001, clock=clock)  # the next slot is ~17 minutes away
    limiter.reserve()
    stop = threading.Event()
    stop.set()
    assert not limiter.acquire(stop)


def test_a_hold_expires_and_a_shorter_one_does_not_shorten_it() -> None:
    clock = Clock()
    gate = TokenGate(clock=clock)
    gate.hold("a", 10.0)
    gate.hold("a", 2.0)
    assert gate.delay("a") == 10.0 and gate.delay("b") == 0.0
    assert gate.held_until("a") == 1010.0 and gate.held_until("b") is None
    clock.now += 10.0
    assert gate.delay("a") == 0.0 and gate.held_until("a") is None


@pytest.mark.parametrize("asked", [315360000.0, float("inf"), 301.0])
def test_a_hold_is_capped(asked: float) -> None:
    clock = Clock()
    gate = TokenGate(clock=clock, max_hold=300.0)
    gate.hold("a", asked)
    assert gate.delay("a") == 300.0


@pytest.mark.parametrize("asked", [0.0, -5.0, float("nan")])
def test_nonsense_holds_hold_nothing(asked: float) -> None:
    gate = TokenGate(clock=Clock())
    gate.hold("a", asked)
    assert gate.delay("a") == 0.0


def test_wait_returns_false_when_stopped_during_a_hold() -> None:
    gate = TokenGate(max_hold=60.0)
    gate.hold("a", 60.0)
    stop = threading.Event()
    stop.set()
    assert not gate.wait("a", stop)
    assert gate.wait("b", stop)
