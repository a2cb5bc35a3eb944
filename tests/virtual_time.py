"""Virtual time for tests of the poller and the client's pacing.

:class:`VirtualClock` is a :class:`exporter.polling.clock.Clock` whose time moves
only when every thread the test started waits on it, and then straight to the
earliest deadline: a schedule of minutes runs in the time its threads compute.
While any of those threads runs (a poll, a commit, the test itself), time stands
still, so what a thread does takes no virtual time at all.

The threads that count are the ones alive now that were not alive when the clock
was made (the test's own thread counts too): they must wait only through the
clock — :meth:`VirtualClock.wait`, :meth:`VirtualClock.sleep`, a
:class:`VirtualEvent` — or time stands still; a wait that makes no progress for
``STALL`` real seconds fails the test and names the thread that held it.

What the poller and client take as arguments is what differs from production:
the clock, a :class:`VirtualEvent` as their stop event (the rate limiter, the
token gate and the client's back-off wait on it), and :class:`VirtualExecutor`
(its idle workers wait on the clock; a ``ThreadPoolExecutor``'s block where the
clock cannot see them).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

__all__ = ["STALL", "VirtualClock", "VirtualEvent", "VirtualExecutor"]

LOOK_AGAIN = 0.02  # real seconds: how often a waiter looks at an event set without notice
STALL = 20.0  # real seconds the test's wait may make no progress before it fails


@dataclass(frozen=True)
class _Waiter:
    event: threading.Event
    deadline: float  # virtual


class VirtualClock:
    """Monotonic time from ``start``; wall time from ``wall`` at the same instant."""

    def __init__(
        self, start: float = 1000.0, wall: float = 1_700_000_000.0, stall: float = STALL
    ) -> None:
        self._now = start
        self._stall = stall
        self._wall_offset = wall - start
        self._cond = threading.Condition()
        self._waiters: dict[threading.Thread, _Waiter] = {}
        self._driver = threading.current_thread()
        self._bystanders = frozenset(t for t in threading.enumerate() if t is not self._driver)

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """``event.wait(timeout)`` in virtual time: True if the event was set."""
        me = threading.current_thread()
        with self._cond:
            deadline = self._now + max(0.0, timeout)
            self._waiters[me] = _Waiter(event, deadline)
            self._cond.notify_all()  # a waiter whose event this thread set can go
            try:
                progress, moved_at = self._now, time.monotonic()
                while not event.is_set() and self._now < deadline:
                    if self._advance():
                        continue
                    self._cond.wait(LOOK_AGAIN)
                    if self._now != progress:
                        progress, moved_at = self._now, time.monotonic()
                    elif me is self._driver and time.monotonic() - moved_at > self._stall:
                        raise AssertionError(f"virtual time stands still: {self._holders()}")
                return event.is_set()
            finally:
                del self._waiters[me]

    def sleep(self, seconds: float) -> None:
        self.wait(threading.Event(), seconds)

    def run_until(
        self, condition: Callable[[], bool], timeout: float, step: float = 0.01, what: str = ""
    ) -> None:
        """Let virtual time pass in ``step``s until ``condition`` holds; fail after
        ``timeout`` virtual seconds."""
        deadline = self._now + timeout
        while not condition():
            if self._now >= deadline:
                raise AssertionError(f"not within {timeout:g} virtual seconds: {what or condition}")
            self.sleep(step)

    def nudge(self) -> None:
        """Wake the waiters to look at their events (one was set)."""
        with self._cond:
            self._cond.notify_all()

    def _participants(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in self._bystanders]

    def _advance(self) -> bool:
        """(Lock held) Move to the earliest deadline if every thread waits and none
        may go on now. Whether time moved."""
        waiters = self._waiters
        if any(t not in waiters for t in self._participants()):
            return False  # a thread runs
        if any(w.event.is_set() for w in waiters.values()):
            return False  # a waiter may go on (its event was set without notice)
        earliest = min(w.deadline for w in waiters.values())
        if earliest <= self._now or math.isinf(earliest):
            return False  # a waiter is due (it will go on), or nothing ever is
        self._now = earliest
        self._cond.notify_all()
        return True

    def _holders(self) -> str:
        running = [t.name for t in self._participants() if t not in self._waiters]
        return f"not waiting on the clock: {running or 'none'}; now {self._now:g}"


class VirtualEvent(threading.Event):
    """A :class:`threading.Event` whose ``wait`` passes virtual time: the stop event
    the rate limiter, the token gate and the client's back-off wait on."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        return self._clock.wait(self, math.inf if timeout is None else timeout)

    def set(self) -> None:
        super().set()
        self._clock.nudge()


_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class VirtualExecutor(Executor):
    """``workers`` threads running submitted calls in order; idle, they wait on the
    clock. Shut down, the queued calls still run (or are cancelled), then they end."""

    def __init__(self, clock: VirtualClock, workers: int, name: str = "poll-worker") -> None:
        self._clock = clock
        self._jobs: collections.deque[_Job] = collections.deque()
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._jobs.append((future, fn, args, kwargs))
            self._work.set()
        self._clock.nudge()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            cancelled = list(self._jobs) if cancel_futures else []
            if cancel_futures:
                self._jobs.clear()
            self._work.set()
        for future, *_ in cancelled:
            future.cancel()  # its done-callbacks run here, as ThreadPoolExecutor's do
        self._clock.nudge()
        if wait:
            for thread in self._threads:
                thread.join()

    def _serve(self) -> None:
        while True:
            with self._lock:
                job = self._jobs.popleft() if self._jobs else None
                if job is None:
                    if self._closed:
                        return
                    self._work.clear()
            if job is None:
                self._clock.wait(self._work, math.inf)
                continue
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
