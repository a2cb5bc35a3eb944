"""The Lynx API client: one evDashboard request, with retries, pacing and typed errors.

Errors carry a ``reason`` that becomes the ``nayax_ev_poll_errors_total`` label.
No message produced here ever contains the token: requests' own exception texts
are replaced by our own, which name only the status or the error class.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from requests.adapters import HTTPAdapter

from exporter.config import LynxConfig, Secret
from exporter.ratelimit import RateLimiter, TokenGate

USER_AGENT_PREFIX = "nayax-ev-exporter"

# A request observation: (code label, seconds). The code is the HTTP status,
# or "timeout" / "connection" when no status arrived.
RequestObserver = Callable[[str, float], None]


class LynxError(Exception):
    """A request that produced no usable answer. ``reason`` is a metric label."""

    reason = "error"

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class AuthError(LynxError):
    reason = "auth"


class NotFoundError(LynxError):
    reason = "not_found"


class ClientRequestError(LynxError):
    reason = "client_error"


class RateLimitedError(LynxError):
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, status: int = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after  # seconds the vendor asked us (or we chose) to wait


class ServerError(LynxError):
    reason = "server_error"


class TimeoutError_(LynxError):
    reason = "timeout"


class ConnectionFailed(LynxError):
    reason = "connection"


class BadPayloadError(LynxError):
    reason = "bad_payload"


class Stopped(LynxError):
    """The exporter is shutting down; not an upstream fault."""

    reason = "stopped"


@dataclass(frozen=True)
class Answer:
    payload: object
    status: int
    attempts: int
    duration: float  # seconds of the last attempt


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _reject_constant(name: str) -> float:
    # The stdlib accepts NaN/Infinity; keep them so the parser can name the field.
    return float(name)


class LynxClient:
    """Thread-safe; one per process (or per reload), shared by all poll workers."""

    def __init__(
        self,
        config: LynxConfig,
        *,
        observer: RequestObserver,
        rate_limiter: RateLimiter,
        token_gate: TokenGate,
        stop: threading.Event,
        version: str = "dev",
        rng: random.Random | None = None,
        sleep_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._observe = observer
        self._limiter = rate_limiter
        self._gate = token_gate
        self._stop = stop
        self._rng = rng or random.Random()
        self._clock = sleep_clock
        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=max(1, config.max_concurrency), max_retries=0
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = f"{USER_AGENT_PREFIX}/{version}"
        self._session.headers["Accept"] = "application/json"
        # Proxies/netrc from the environment stay honoured; netrc auth would
        # override our header, so trust_env stays on but we always set the header.

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"LynxClient(base_url={self._config.base_url!r})"

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with "full jitter" in [base/2, cap]."""
        ceiling = min(self._config.retry_backoff_max, self._config.retry_backoff * 2**attempt)
        return float(ceiling / 2 + self._rng.random() * ceiling / 2)

    def fetch(self, actor_id: int, params: Mapping[str, str], token: Secret) -> Answer:
        """GET evDashboard for one actor. Raises a :class:`LynxError` subclass."""
        url = f"{self._config.base_url}/v1/actors/{actor_id}/evDashboard"
        headers = {"Authorization": f"Bearer {token.reveal()}"}
        attempts_allowed = self._config.max_retries + 1
        last_error: LynxError | None = None
        for attempt in range(attempts_allowed):
            if attempt:
                assert last_error is not None
                wait = (
                    last_error.retry_after
                    if isinstance(last_error, RateLimitedError)
                    else self.backoff(attempt - 1)
                )
                if self._stop.wait(wait):
                    raise Stopped("shutting down", attempts=attempt)
            if not self._gate.wait(token.reveal(), self._stop) or not self._limiter.acquire(
                self._stop
            ):
                raise Stopped("shutting down", attempts=attempt)
            try:
                return self._attempt(url, params, headers, token, attempt + 1)
            except LynxError as error:
                error.attempts = attempt + 1
                last_error = error
                if not _retryable(error):
                    raise
                if (
                    isinstance(error, RateLimitedError)
                    and error.retry_after > self._config.retry_backoff_max
                ):
                    raise  # too long to wait within this poll; the gate holds the token
        assert last_error is not None
        raise last_error

    def _attempt(
        self,
        url: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        token: Secret,
        attempt: int,
    ) -> Answer:
        started = time.perf_counter()
        try:
            response = self._session.get(
                url, params=dict(params), headers=dict(headers), timeout=self._config.timeout
            )
            body = response.content  # read fully inside the try: resets arrive here
        except requests.Timeout:
            self._observe("timeout", time.perf_counter() - started)
            raise TimeoutError_(f"no answer within {self._config.timeout:g}s") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            self._observe("connection", time.perf_counter() - started)
            raise ConnectionFailed(f"connection failed ({_cause_name(exc)})") from None
        except requests.RequestException as exc:
            self._observe("connection", time.perf_counter() - started)
            raise ConnectionFailed(f"request failed ({type(exc).__name__})") from None
        duration = time.perf_counter() - started
        status = response.status_code
        self._observe(str(status), duration)
        if status == 200:
            try:
                payload = json.loads(body, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError):
                content_type = response.headers.get("Content-Type", "?").split(";")[0]
                raise BadPayloadError(
                    f"HTTP 200 with a body that is not JSON (Content-Type {content_type})",
                    status=status,
                ) from None
            return Answer(payload=payload, status=status, attempts=attempt, duration=duration)
        raise self._status_error(status, response.headers.get("Retry-After"), token)

    def _status_error(
        self, status: int, retry_after_header: str | None, token: Secret
    ) -> LynxError:
        if status in (401, 403):
            return AuthError(f"HTTP {status}: token rejected", status=status)
        if status == 404:
            return NotFoundError("HTTP 404: unknown actor or machine", status=status)
        if status == 429:
            retry_after = parse_retry_after(retry_after_header)
            hold = retry_after if retry_after is not None else self.backoff(0)
            self._gate.hold(token.reveal(), hold)
            return RateLimitedError("HTTP 429: rate limited", retry_after=hold)
        if status >= 500:
            return ServerError(f"HTTP {status}: server error", status=status)
        return ClientRequestError(f"HTTP {status}: request rejected", status=status)


def _retryable(error: LynxError) -> bool:
    return isinstance(error, RateLimitedError | ServerError | TimeoutError_ | ConnectionFailed)


def _cause_name(exc: BaseException) -> str:
    """A short, secret-free description: the innermost exception class name."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    if isinstance(exc.args[0] if exc.args else None, BaseException):
        seen = exc.args[0]
    name = type(seen).__name__
    text = str(seen).lower()
    if "name or service not known" in text or "nodename nor servname" in text:
        return "name resolution failed"
    if "refused" in text:
        return "connection refused"
    if "reset" in text:
        return "connection reset"
    return name
