"""Scoped tokens: refresh tokens exchanged for the access tokens requests carry.

A refresh token (``lynx.refresh_token``, ``actors[].refresh_token``) is exchanged
with ``POST {auth_url}/v1/issue-access-token`` (``Authorization: jwt <refresh>``)
for an access token, a JWT valid 24 hours, sent as ``Bearer``. The
:class:`TokenBroker` keeps one access token per refresh token and:

- counts an exchange whose answer does not look like an access token (see
  :func:`usable_access_token`, which the client applies) as failed;
- renews it ahead of expiry, when a quarter of its lifetime is left (``exp`` read
  from the JWT without verifying it; 24 h assumed when absent), so no poll ever
  carries an expired one;
- takes an ``exp`` in the past, less than a minute ahead, more than a year ahead or
  not finite as "lifetime unknown": the token is used (and assumed to last the
  vendor's 24 h), but renewed after 15 s, then 30 s, 60 s ... 5 min while such
  tokens keep coming, so a broken claim never costs more than a few exchanges a
  minute;
- exchanges once for all concurrent polls (single flight: the others wait for the
  one exchange, bounded by ``lynx.timeout``);
- drops a token a data endpoint answered 401 to, so the next request exchanges
  again (the client asks once more before calling the target down);
- after a failed exchange, backs off exponentially (1 s doubling to 5 min, or the
  429's ``Retry-After``): polls meanwhile fail at once with the exchange's error,
  without a request, and keep using a still-valid older token if there is one.

The exchange itself (the HTTP request) is the client's; this module decides when.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeGuard

from exporter.config import RefreshToken, Secret

DEFAULT_LIFETIME = 86400.0  # seconds: an access token without `exp` (the vendor's 24 h)
# An `exp` outside these bounds (from the exchange's instant) gives no lifetime: the
# vendor's is 24 h; a shorter one than a minute would take more than one exchange a
# minute, a longer one than a year is no access token's.
SHORTEST_LIFETIME = 60.0
LONGEST_LIFETIME = 365 * 86400.0
MIN_EXCHANGE_GAP = 1.0  # seconds: never exchange more often than this, whatever happens
RENEW_AT = 0.75  # of the lifetime: renew when a quarter is left
BACKOFF_BASE = 1.0  # seconds after the first failed exchange; doubles per failure
BACKOFF_MAX = 300.0
UNKNOWN_RENEW_BASE = 15.0  # seconds: renewal of a token of unknown lifetime; doubles
# An access token is a JWT, hundreds of characters; one shorter than this is none,
# and the log scrubber could not hide it without garbling every line.
MIN_ACCESS_TOKEN_CHARS = 16
MAX_ACCESS_TOKEN_CHARS = 16 * 1024  # no header should carry more
# RFC 6750's b64token, the grammar of a Bearer credential (a JWT is one).
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# The exchange: a refresh token in, an access token's text out. Raises a LynxError
# (with ``retry_after`` for a 429) when the exchange fails.
Exchange = Callable[[RefreshToken], str]


def _fresh(error: Exception) -> Exception:
    """A copy of ``error`` to raise: the one stored is shared by every poll that
    fails with it meanwhile (and a raise rewrites its traceback and attempts)."""
    clone = type(error).__new__(type(error))
    clone.args = error.args
    clone.__dict__.update(error.__dict__)
    return clone


def usable_access_token(value: object) -> TypeGuard[str]:
    """Pure: whether ``value`` (an exchange's ``Token``) can be an access token:
    an RFC 6750 bearer token of MIN_ACCESS_TOKEN_CHARS to MAX_ACCESS_TOKEN_CHARS."""
    return (
        isinstance(value, str)
        and MIN_ACCESS_TOKEN_CHARS <= len(value) <= MAX_ACCESS_TOKEN_CHARS
        and _BEARER_TOKEN.fullmatch(value) is not None
    )


def jwt_expiry(token: str) -> float | None:
    """Pure: the ``exp`` claim (Unix seconds) of a JWT, read without verifying it;
    None when the token is no JWT or its ``exp`` no number. One too large for a
    float reads as infinite (which :func:`token_lifetime` refuses)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment.encode("ascii")))
    except (ValueError, UnicodeError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    try:
        return float(exp)
    except OverflowError:  # an integer of hundreds of digits
        return math.inf if exp > 0 else -math.inf


def token_lifetime(exp: float | None, wall: float) -> float | None:
    """Pure: seconds an access token with the JWT ``exp`` has left at ``wall``: the
    vendor's 24 h without an ``exp``; None, "unknown", when ``exp`` is in the past,
    within SHORTEST_LIFETIME, beyond LONGEST_LIFETIME or not a finite number."""
    if exp is None:
        return DEFAULT_LIFETIME
    left = exp - wall
    return left if SHORTEST_LIFETIME <= left <= LONGEST_LIFETIME else None


def exchange_backoff(failures: int, retry_after: float | None) -> float:
    """Pure: seconds to wait after the ``failures``-th failed exchange in a row."""
    step = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(failures - 1, 30))
    return float(max(step, min(retry_after or 0.0, BACKOFF_MAX)))


def unknown_renewal(streak: int) -> float:
    """Pure: seconds until renewing the ``streak``-th token in a row whose lifetime
    is unknown: 15 s, doubling to 5 min (at most three exchanges in any minute)."""
    return float(min(BACKOFF_MAX, UNKNOWN_RENEW_BASE * 2 ** min(streak - 1, 30)))


@dataclass(frozen=True)
class AccessToken:
    secret: Secret
    expires_at: float  # Unix seconds: its `exp`, or the vendor's 24 h if that is unknown
    renew_at: float  # monotonic seconds
    known: bool = True  # whether its lifetime is known (else renewals back off)


def access_token(text: str, wall: float, mono: float, unknown: int = 0) -> AccessToken:
    """Pure: an exchanged token with its expiry and the instant to renew it;
    ``unknown``: how many tokens in a row before it had an unknown lifetime."""
    lifetime = token_lifetime(jwt_expiry(text), wall)
    if lifetime is None:
        renew_at = mono + unknown_renewal(unknown + 1)
        return AccessToken(Secret(text), wall + DEFAULT_LIFETIME, renew_at, known=False)
    return AccessToken(Secret(text), wall + lifetime, renew_at=mono + RENEW_AT * lifetime)


@dataclass(frozen=True)
class _State:
    token: AccessToken | None = None
    failures: int = 0  # failed exchanges in a row
    unknown: int = 0  # exchanged tokens in a row whose lifetime was unknown
    forced: int = 0  # renewals forced by a 401, in a row (each within BACKOFF_MAX)
    forced_at: float = -math.inf  # monotonic: the last one
    not_before: float = -math.inf  # monotonic: no exchange before this
    exchanged_at: float = -math.inf  # monotonic: the last exchange tried
    error: Exception | None = None  # why there is no usable token, if there is none


class _Slot:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # held during an exchange: single flight
        self.state = _State()


class TokenBroker:
    """Thread-safe: one access token per refresh token, shared by every poll."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        on_token: Callable[[str], None] = lambda _text: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._exchange = exchange
        self._on_token = on_token  # e.g. register the new token with the log scrubber
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._slots: dict[RefreshToken, _Slot] = {}

    def __repr__(self) -> str:
        return f"TokenBroker({len(self._slots)} refresh tokens)"

    def _slot(self, refresh: RefreshToken) -> _Slot:
        with self._lock:
            return self._slots.setdefault(refresh, _Slot())

    def access(self, refresh: RefreshToken) -> Secret:
        """The access token to send now, exchanging first if it is due. Raises the
        exchange's error (or, while backing off after one, that error again)."""
        slot = self._slot(refresh)
        with slot.lock:
            state = slot.state
            now = self._clock()
            if state.token is not None and now < state.token.renew_at:
                return state.token.secret
            if now < state.not_before:
                return self._fallback(state)
            try:
                text = self._exchange(refresh)
            except Exception as error:  # the client's LynxError: a failed exchange
                failures = state.failures + 1
                wait = exchange_backoff(failures, getattr(error, "retry_after", None))
                slot.state = replace(
                    state, failures=failures, not_before=now + wait, exchanged_at=now, error=error
                )
                return self._fallback(slot.state)
            self._on_token(text)
            token = access_token(text, self._wall(), self._clock(), state.unknown)
            # Even after a successful exchange, the next waits at least MIN_EXCHANGE_GAP.
            slot.state = _State(
                token=token,
                unknown=0 if token.known else state.unknown + 1,
                forced=state.forced,
                forced_at=state.forced_at,
                not_before=now + MIN_EXCHANGE_GAP,
                exchanged_at=now,
            )
            return token.secret

    def _fallback(self, state: _State) -> Secret:
        """While no exchange may be tried: the token held if it is still valid (or
        nothing went wrong), else why there is none."""
        token = state.token
        if token is not None and (state.error is None or self._wall() < token.expires_at):
            return token.secret
        assert state.error is not None
        raise _fresh(state.error)

    def rejected(self, refresh: RefreshToken, access: Secret, error: Exception) -> None:
        """A data endpoint answered 401 to ``access``: renew it, at once the first
        time, then backing off (1 s, 2 s, ... 5 min) while 401s keep coming, even
        between good answers: a refresh token whose access tokens some endpoint
        always refuses must not cost an exchange a poll. Until renewed, the token
        stays in use (other endpoints may still take it)."""
        slot = self._slot(refresh)
        with slot.lock:
            state = slot.state
            token = state.token
            if token is None or token.secret != access or token.renew_at == -math.inf:
                return  # not ours any more, or already marked by a concurrent poll
            now = self._clock()
            streak = state.forced + 1 if now - state.forced_at < BACKOFF_MAX else 1
            not_before = state.not_before if state.failures else -math.inf
            if streak > 1:
                not_before = max(not_before, state.forced_at + exchange_backoff(streak - 1, None))
            slot.state = replace(
                state,
                token=replace(token, renew_at=-math.inf),
                forced=streak,
                forced_at=now,
                not_before=not_before,
                error=error,
            )

    def expiry(self, refresh: RefreshToken) -> float | None:
        """Unix seconds when the current access token expires; 0 once an exchange
        was tried and none is held; None before the first."""
        with self._lock:
            slot = self._slots.get(refresh)
        if slot is None:
            return None
        token = slot.state.token
        return token.expires_at if token is not None else 0.0
