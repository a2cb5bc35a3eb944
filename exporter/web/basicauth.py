"""Basic auth against bcrypt hashes that a flood of wrong passwords cannot starve.

bcrypt is slow on purpose; unbounded, a flood of wrong passwords takes every
core and scrapes time out. So:

- Verified credentials are remembered (as the toolkit does), and so are recent
  failed ones: a scrape with a known password, or a client repeating the same
  wrong one, costs an HMAC, not a bcrypt check. Both caches keep keyed digests
  (a random per-process key), never passwords.
- Every other check needs one of ``HASHING_SLOTS`` slots (one core fewer than
  the process may use, at least 1, at most 4: a core is left for scrapes and
  polls), granted in arrival order. A check that gets none within
  ``SLOT_WAIT`` seconds is answered without hashing (:attr:`Verdict.BUSY`:
  503, the password was not checked). A check whose connection is cut while it
  waits (evicted by a newcomer, past its deadline, shutdown) wakes at once and
  never hashes (:attr:`Verdict.CUT`).
- Equal work whatever the user name: an unknown user is checked against the
  hash of the highest configured cost, and a wrong password for a user of a
  lower cost is answered only after the time a check at the highest cost takes
  (the difference is waited out of the slot, costing no CPU), so response
  times do not tell which users exist.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import bcrypt

BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (and bcrypt>=5 refuses) the rest
SLOT_WAIT = 5.0  # seconds a check may wait for a hashing slot (Prometheus times out at 10)
VERIFIED_LIMIT = 256  # remembered verified user:password digests
FAILED_LIMIT = 1024  # remembered failed ones
PACE_SAMPLES = 15  # recent bcrypt timings the equal-work padding is based on


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # a container's cpuset, not the host's cores
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def hashing_slots(cpus: int) -> int:
    """Pure. bcrypt checks at once: a core kept free, at least 1, at most 4."""
    return max(1, min(4, cpus - 1))


HASHING_SLOTS = hashing_slots(usable_cpus())


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"  # 401
    BUSY = "busy"  # no hashing slot within SLOT_WAIT: 503, the password was not checked
    CUT = "cut"  # the connection was cut while its check waited: nothing to answer


class Interrupt:
    """One per connection: :meth:`cut` (called by the connection guard when it
    closes the connection) wakes a check waiting for a slot or padding its time,
    and stops one that has not started hashing."""

    def __init__(self) -> None:
        self.wake = threading.Event()  # set by a cut, and by a granted slot
        self._cut = False

    def cut(self) -> None:
        self._cut = True
        self.wake.set()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless cut first; True if cut."""
        self.wake.clear()
        if not self._cut:
            self.wake.wait(seconds)
        return self._cut


class _Waiter:
    def __init__(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt
        self.granted = False


class HashingSlots:
    """At most ``count`` bcrypt checks at once, granted first come, first served
    (a slot is handed straight to the oldest waiter, never to a newcomer)."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._free = count
        self._waiting: deque[_Waiter] = deque()

    def acquire(self, interrupt: Interrupt, wait: float) -> bool:
        """True: a slot is held (:meth:`release` it). False: none came within
        ``wait`` seconds, or the connection was cut."""
        interrupt.wake.clear()  # before queueing: a grant after this is never lost
        with self._lock:
            if interrupt.is_cut:
                return False
            if self._free:  # nobody waits while a slot is free
                self._free -= 1
                return True
            waiter = _Waiter(interrupt)
            self._waiting.append(waiter)
        interrupt.wake.wait(wait)
        with self._lock:
            if not waiter.granted:
                self._waiting.remove(waiter)
            return waiter.granted

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                waiter = self._waiting.popleft()
                waiter.granted = True  # a cut waiter hands it on at once
                waiter.interrupt.wake.set()
            else:
                self._free += 1


class _DigestSet:
    """HMAC digests (under a per-process random key) of user:password pairs,
    never the passwords themselves. Bounded: cleared when full."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._key = os.urandom(32)
        self._digests: set[bytes] = set()
        self._lock = threading.Lock()

    def _digest(self, user: str, password: bytes, hashed: bytes) -> bytes:
        message = user.encode("utf-8") + b"\0" + hashed + b"\0" + password
        return hmac.digest(self._key, message, hashlib.sha256)

    def __contains__(self, entry: tuple[str, bytes, bytes]) -> bool:
        digest = self._digest(*entry)
        with self._lock:
            return digest in self._digests

    def add(self, entry: tuple[str, bytes, bytes]) -> None:
        digest = self._digest(*entry)
        with self._lock:
            if len(self._digests) >= self._limit:
                self._digests.clear()
            self._digests.add(digest)


def bcrypt_cost(hashed: bytes) -> int:
    """Pure. The cost field of a validated ``$2y$NN$...`` hash."""
    return int(hashed[4:6])


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """Pure. (user, password) from an ``Authorization: Basic`` value, or None."""
    if header is None or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    secret = password.encode("utf-8")
    if not sep or len(secret) > BCRYPT_MAX_PASSWORD:
        return None  # says nothing about which users exist
    return user, secret


def equal_work_padding(samples: list[float], cost: int, highest: int, elapsed: float) -> float:
    """Pure. Seconds to wait after a failed check at ``cost`` that took
    ``elapsed``, so that it lasts as long as one at the ``highest`` cost.
    ``samples``: recent checks' seconds per bcrypt round (a check's time is
    proportional to 2**cost); their median resists one check slowed by load."""
    if cost >= highest or not samples:
        return 0.0
    expected: float = statistics.median(samples) * 2**highest
    return max(0.0, expected - elapsed)


class BasicAuth:
    """The configured users and everything their checks share."""

    def __init__(
        self, users: Mapping[str, bytes], slots: int = HASHING_SLOTS, wait: float = SLOT_WAIT
    ) -> None:
        self.users: Mapping[str, bytes] = MappingProxyType(dict(users))
        # Unknown user names are checked against the costliest real hash: no
        # hashing at start-up (a high cost would delay it by minutes).
        self.decoy: bytes = max(self.users.values(), key=bcrypt_cost, default=b"")
        self._highest = bcrypt_cost(self.decoy) if self.decoy else 0
        self.slots = HashingSlots(slots)
        self._wait = wait
        self._verified = _DigestSet(VERIFIED_LIMIT)
        self._failed = _DigestSet(FAILED_LIMIT)
        self._pace: deque[float] = deque(maxlen=PACE_SAMPLES)  # seconds per round
        self._pace_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BasicAuth(users={sorted(self.users)!r})"  # names only, never hashes

    def check(self, header: str | None, interrupt: Interrupt | None = None) -> Verdict:
        if not self.users:
            return Verdict.ALLOWED
        credentials = parse_basic(header)
        if credentials is None:
            return Verdict.DENIED
        user, secret = credentials
        hashed = self.users.get(user)
        if hashed is not None and (user, secret, hashed) in self._verified:
            return Verdict.ALLOWED
        entry = (user, secret, hashed if hashed is not None else self.decoy)
        if entry in self._failed:
            return Verdict.DENIED  # as quick for an unknown user as for a known one
        interrupt = interrupt if interrupt is not None else Interrupt()
        if not self.slots.acquire(interrupt, self._wait):
            return Verdict.CUT if interrupt.is_cut else Verdict.BUSY
        try:
            if interrupt.is_cut:
                return Verdict.CUT  # cut while waiting: nobody to hash for
            started = time.monotonic()
            matched = bcrypt.checkpw(secret, entry[2])
            elapsed = time.monotonic() - started
        finally:
            self.slots.release()
        if matched and hashed is not None:
            self._verified.add(entry)
            return Verdict.ALLOWED
        self._failed.add(entry)
        padding = self._padding(bcrypt_cost(entry[2]), elapsed)
        if padding and interrupt.sleep(padding):
            return Verdict.CUT
        return Verdict.DENIED

    def _padding(self, cost: int, elapsed: float) -> float:
        with self._pace_lock:
            self._pace.append(elapsed / 2**cost)
            samples = list(self._pace)
        return equal_work_padding(samples, cost, self._highest, elapsed)
