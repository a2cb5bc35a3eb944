"""Unit tests of ``exporter.web.basicauth``: bounded hashing slots, checks that stop
when their connection is cut, the failed-credentials cache and equal-work padding.
Over real sockets: tests/test_web_security.py (a flood of wrong passwords)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import bcrypt
import pytest

from exporter.web.basicauth import BasicAuth, Interrupt, Verdict, equal_work_padding, hashing_slots
from tests.harness import wait_for
from tests.test_web_security import bcrypt_hash

HASH = bcrypt_hash("right", 4).encode()


def header(password: str, user: str = "alice") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class HeldCheckpw:
    """bcrypt.checkpw that records every password and holds the first call
    (and so its slot) until ``release`` is set."""

    release: threading.Event = field(default_factory=threading.Event)
    passwords: list[bytes] = field(default_factory=list)

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.passwords.append(password)
        if len(self.passwords) == 1:
            assert self.release.wait(10)
        return False


@dataclass
class CountedCheckpw:
    """The real bcrypt.checkpw, recording the password and the hash of every call."""

    real: Callable[[bytes, bytes], bool]
    passwords: list[bytes] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.passwords.append(password)
        self.hashes.append(hashed)
        return self.real(password, hashed)

    def clear(self) -> None:
        self.passwords.clear()
        self.hashes.clear()


def count_checkpw(monkeypatch: pytest.MonkeyPatch) -> CountedCheckpw:
    counted = CountedCheckpw(bcrypt.checkpw)
    monkeypatch.setattr(bcrypt, "checkpw", counted)
    return counted


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCheckpw]:
    fake = HeldCheckpw()
    monkeypatch.setattr(bcrypt, "checkpw", fake)
    yield fake
    fake.release.set()


def start_check(auth: BasicAuth, password: str, interrupt: Interrupt) -> dict[str, Verdict]:
    result: dict[str, Verdict] = {}

    def run() -> None:
        result["verdict"] = auth.check(header(password), interrupt)

    threading.Thread(target=run, daemon=True).start()
    return result


def test_a_check_cut_while_waiting_for_a_slot_wakes_and_never_hashes(held: HeldCheckpw) -> None:
    auth = BasicAuth({"alice": HASH}, slots=1, wait=60)
    holder = start_check(auth, "first", Interrupt())
    wait_for(lambda: held.passwords == [b"first"], timeout=5, what="the slot taken")
    waiter_interrupt = Interrupt()
    waiter = start_check(auth, "second", waiter_interrupt)
    wait_for(lambda: auth.slots.waiting == 1, timeout=5, what="a check queued")
    waiter_interrupt.cut()  # what the connection guard does when it evicts the connection
    wait_for(lambda: "verdict" in waiter, timeout=5, what="the cut check to return")
    assert waiter["verdict"] is Verdict.CUT
    assert auth.slots.waiting == 0
    held.release.set()
    wait_for(lambda: "verdict" in holder, timeout=5, what="the first check")
    assert holder["verdict"] is Verdict.DENIED
    assert held.passwords == [b"first"]  # "second" was never hashed
    # A connection already cut never queues, and the slot is free again.
    assert auth.check(header("third"), waiter_interrupt) is Verdict.CUT
    assert auth.check(header("fourth")) is Verdict.DENIED
    assert held.passwords == [b"first", b"fourth"]


def test_no_slot_in_time_is_busy_and_not_remembered_as_a_failure(held: HeldCheckpw) -> None:
    auth = BasicAuth({"alice": HASH}, slots=1, wait=0.05)
    holder = start_check(auth, "first", Interrupt())
    wait_for(lambda: held.passwords == [b"first"], timeout=5, what="the slot taken")
    assert auth.check(header("second")) is Verdict.BUSY
    held.release.set()
    wait_for(lambda: "verdict" in holder, timeout=5, what="the first check")
    # Not checked, so not cached as wrong: the retry is hashed; a repeat of a
    # checked wrong password is not.
    assert auth.check(header("second")) is Verdict.DENIED
    assert auth.check(header("first")) is Verdict.DENIED
    assert held.passwords == [b"first", b"second"]


def test_repeated_wrong_credentials_cost_one_hash_known_user_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = BasicAuth({"alice": HASH})
    counted = count_checkpw(monkeypatch)
    for _ in range(3):
        assert auth.check(header("wrong")) is Verdict.DENIED
        assert auth.check(header("wrong", user="mallory")) is Verdict.DENIED
        assert auth.check(header("right")) is Verdict.ALLOWED
    assert counted.passwords == [b"wrong", b"wrong", b"right"]


def test_a_cheap_users_wrong_password_is_padded_to_the_highest_cost() -> None:
    per_round = 1e-4  # seconds: cost 4 takes 1.6 ms, cost 10 0.1 s
    samples = [per_round * 0.9, per_round, per_round * 50]  # one check slowed by load
    assert equal_work_padding(samples, 4, 10, 0.0016) == pytest.approx(per_round * 1024 - 0.0016)
    assert equal_work_padding(samples, 10, 10, 0.1) == 0  # its own hash is the highest cost
    assert equal_work_padding([], 4, 10, 0.0016) == 0
    assert equal_work_padding(samples, 4, 10, 5.0) == 0  # already slower than the highest


@pytest.mark.parametrize(("cpus", "slots"), [(1, 1), (2, 1), (3, 2), (5, 4), (64, 4)])
def test_hashing_leaves_a_core_free(cpus: int, slots: int) -> None:
    assert hashing_slots(cpus) == slots


def test_no_users_means_no_check() -> None:
    assert BasicAuth({}).check(None) is Verdict.ALLOWED
    assert repr(BasicAuth({"alice": HASH})) == "BasicAuth(users=['alice'])"
