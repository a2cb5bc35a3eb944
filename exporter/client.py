"""The Lynx API client: one GET request, with retries, pacing and typed errors.

:meth:`LynxClient.get_json` serves every GET endpoint (evDashboard, machines,
machine status); :meth:`LynxClient.fetch` is evDashboard's shorthand. The exchange
itself (deadline, caps, no redirects, no cookies) is :mod:`exporter.transport`'s.

Errors carry a ``reason`` that becomes the ``nayax_ev_poll_errors_total`` label.
No message produced here ever contains the token: the HTTP stack's exception texts
are replaced by our own, which name only the status or the error class, and the
vendor's own error text is scrubbed of the token before it is quoted.
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
from urllib.parse import urlencode

import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from exporter.config import LynxConfig, Secret
from exporter.ratelimit import RateLimiter, TokenGate
from exporter.transport import (
    ACCEPT_ENCODING,
    MAX_BODY_BYTES,
    BadEncoding,
    BodyTooLarge,
    DeadlineAdapter,
    DeadlinePassed,
    cause_name,
    deadline_scope,
    read_body,
)

USER_AGENT_PREFIX = "nayax-ev-exporter"
# Sent with every request as "<poll id> <attempt>/<attempts allowed>": the retries of
# one poll share the id, so the vendor's logs (and the simulator) can tell a retry
# from a new poll, as AWS SDKs do with amz-sdk-invocation-id / amz-sdk-request.
ATTEMPT_HEADER = "X-Request-Attempt"
EV_DASHBOARD_PATH = "/v1/actors/{actor_id}/evDashboard"
REDACTED = "<redacted>"
__all__ = ["MAX_BODY_BYTES", "Answer", "Credential", "LynxClient", "LynxError"]

# What a request authenticates with: a token sent as Bearer as it is.
Credential = Secret

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


class RedirectError(LynxError):
    """A 3xx: never followed (the token must not go where ``Location`` points)."""

    reason = "redirect"


class RateLimitedError(LynxError):
    reason = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float, status: int | None = 429, attempts: int = 1
    ) -> None:
        super().__init__(message, status=status, attempts=attempts)
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


@dataclass(frozen=True)
class _Reply:
    """One exchange's outcome: a status, with the (capped) body unless it was a 3xx."""

    status: int
    headers: Mapping[str, str]
    body: bytes | None
    duration: float


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
        self._adapter = DeadlineAdapter(
            pool_connections=1, pool_maxsize=max(1, config.max_concurrency), max_retries=0
        )
        self._headers = {
            "User-Agent": f"{USER_AGENT_PREFIX}/{version}",
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        # Proxy settings from the environment (HTTPS_PROXY, NO_PROXY, ...) are read
        # once here, not on every request; ~/.netrc is never consulted (it would
        # replace our Authorization header).
        self._proxies = requests.utils.get_environ_proxies(config.base_url)

    def close(self) -> None:
        self._adapter.close()

    def __repr__(self) -> str:
        return f"LynxClient(base_url={self._config.base_url!r})"

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with "full jitter" in [base/2, cap]."""
        ceiling = min(self._config.retry_backoff_max, self._config.retry_backoff * 2**attempt)
        return float(ceiling / 2 + self._rng.random() * ceiling / 2)

    def fetch(self, actor_id: int, params: Mapping[str, str], token: Credential) -> Answer:
        """GET evDashboard for one actor. Raises a :class:`LynxError` subclass."""
        return self.get_json(EV_DASHBOARD_PATH.format(actor_id=actor_id), params, token)

    def get_json(self, path: str, params: Mapping[str, str], credential: Credential) -> Answer:
        """GET ``{base_url}{path}?{params}`` and decode its JSON answer, retrying what
        is worth retrying. Raises a :class:`LynxError` subclass, never anything else."""
        url = f"{self._config.base_url}{path}"
        if params:
            url = f"{url}?{urlencode(params)}"
        attempts_allowed = self._config.max_retries + 1
        poll_id = f"{self._rng.getrandbits(64):016x}"
        last_error: LynxError | None = None
        for attempt in range(attempts_allowed):
            secret = credential.reveal()
            self._pace(attempt, last_error, secret)
            headers = {
                "Authorization": _bearer(secret),
                ATTEMPT_HEADER: f"{poll_id} {attempt + 1}/{attempts_allowed}",
            }
            try:
                return self._attempt(url, headers, secret, attempt + 1)
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

    def _pace(self, attempt: int, last_error: LynxError | None, secret: str) -> None:
        """Wait before an attempt: the back-off after a failure, the token's 429 hold,
        the rate limit. Raises Stopped on shutdown, RateLimitedError when held."""
        if attempt:
            assert last_error is not None
            wait = (
                last_error.retry_after
                if isinstance(last_error, RateLimitedError)
                else self.backoff(attempt - 1)
            )
            if self._stop.wait(wait):
                raise Stopped("shutting down", attempts=attempt)
        # A 429 holds its token (TokenGate). A poll never waits for another poll's
        # hold in a worker: with enough targets on that token, every worker would
        # sit out the Retry-After and other tokens' targets would starve. So it
        # fails at once, without a request; only a poll retrying after its own
        # 429 (or back-off) waits, and no longer than retry_backoff_max.
        held = self._gate.delay(secret)
        if held > (self._config.retry_backoff_max if attempt else 0.0):
            raise RateLimitedError(
                f"token held back {held:.1f}s more after HTTP 429; no request sent",
                retry_after=held,
                status=None,
                attempts=attempt,
            )
        if not self._gate.wait(secret, self._stop) or not self._limiter.acquire(self._stop):
            raise Stopped("shutting down", attempts=attempt)

    def _attempt(self, url: str, headers: Mapping[str, str], secret: str, attempt: int) -> Answer:
        reply = self._exchange("GET", url, headers)
        status = reply.status
        if not 200 <= status < 300:
            raise self._status_error(reply, secret)
        assert reply.body is not None
        try:
            payload = json.loads(reply.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: deeply nested JSON is as unusable as broken JSON.
            content_type = reply.headers.get("Content-Type", "?").split(";")[0]
            raise BadPayloadError(
                "HTTP 200 with a body that is not JSON (Content-Type "
                f"{_redact(content_type, secret)[:60]})",
                status=status,
            ) from None
        # An upstream that reflects request headers into its answer must not get
        # our token into a parse-problem message, the landing page or a log line.
        # Walking the payload is skipped when the body plainly cannot hold the
        # token: no occurrence and no JSON escape that could spell it.
        if b"\\" in reply.body or secret.encode() in reply.body:
            payload = _scrub(payload, secret)
        return Answer(payload=payload, status=status, attempts=attempt, duration=reply.duration)

    def _exchange(self, method: str, url: str, headers: Mapping[str, str]) -> _Reply:
        """One request and its answer within ``lynx.timeout``, connect to last byte.
        Observes the request; raises a LynxError for anything but a status."""
        timeout = self._config.timeout
        started = time.monotonic()
        deadline = started + timeout
        status: int | None = None
        try:
            with deadline_scope(deadline):
                response = self._adapter.send(
                    self._prepare(method, url, headers),
                    stream=True,
                    timeout=(timeout, timeout),
                    proxies=self._proxies,
                )
                status = response.status_code
                try:
                    body = None if 300 <= status < 400 else read_body(response, deadline)
                finally:
                    response.close()
        except Exception as exc:  # the HTTP stack's texts may quote the token
            raise self._transport_error(exc, status, time.monotonic() - started) from None
        duration = time.monotonic() - started
        self._observe(str(status), duration)
        return _Reply(status=status, headers=response.headers, body=body, duration=duration)

    def _transport_error(self, exc: Exception, status: int | None, elapsed: float) -> LynxError:
        """Our own, secret-free error for an exchange that raised ``exc``."""
        timeout = self._config.timeout
        if isinstance(
            exc, requests.Timeout | urllib3.exceptions.TimeoutError | DeadlinePassed | TimeoutError
        ):
            self._observe("timeout", elapsed)
            return TimeoutError_(f"no complete answer within {timeout:g}s", status=status)
        if isinstance(exc, BodyTooLarge) and status is not None:
            self._observe(str(status), elapsed)
            return BadPayloadError(
                f"HTTP {status} with a body over {MAX_BODY_BYTES} bytes (as sent or decompressed)",
                status=status,
            )
        if isinstance(exc, BadEncoding) and status is not None:
            self._observe(str(status), elapsed)
            return BadPayloadError(
                f"HTTP {status} with a body in an encoding not asked for, or corrupt",
                status=status,
            )
        # urllib3's own errors surface here because the body is read from the raw
        # stream (a reset mid-body is a ProtocolError); anything else the stack
        # raises (a header it cannot send, a malformed status line) lands here too.
        self._observe("connection", elapsed)
        return ConnectionFailed(f"connection failed ({cause_name(exc)})", status=status)

    def _prepare(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> requests.PreparedRequest:
        """The request, prepared here rather than by ``Session.request``: no cookies,
        no ~/.netrc, no hooks, and the generic merging of those was about a sixth of
        the CPU of each poll. The query is our own (dates and ids)."""
        prepared = requests.PreparedRequest()  # body None, default hooks, no cookies
        prepared.method = method
        prepared.url = url
        merged = CaseInsensitiveDict(self._headers)
        merged.update(headers)
        if method == "POST":
            merged["Content-Length"] = "0"
        prepared.headers = merged
        return prepared

    def _status_error(self, reply: _Reply, secret: str) -> LynxError:
        status = reply.status
        if 300 <= status < 400:
            return RedirectError(f"HTTP {status}: redirect not followed", status=status)
        if status in (401, 403):
            return AuthError(f"HTTP {status}: token rejected", status=status)
        if status == 404:
            return NotFoundError("HTTP 404: unknown actor or machine", status=status)
        if status == 429:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            hold = retry_after if retry_after is not None else self.backoff(0)
            self._gate.hold(secret, hold)
            return RateLimitedError("HTTP 429: rate limited", retry_after=hold)
        if status >= 500:
            return ServerError(f"HTTP {status}: server error", status=status)
        return ClientRequestError(f"HTTP {status}: request rejected", status=status)


def _bearer(secret: str) -> str:
    """The Authorization value, or AuthError for a token no header can carry: the
    HTTP stack's own complaint would quote the whole header, token included."""
    if not secret or not all(" " <= c <= "~" for c in secret):
        raise AuthError("the token holds a character an HTTP header cannot carry")
    return f"Bearer {secret}"


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, REDACTED) if secret else text


def _scrub(node: object, secret: str) -> object:
    """``node`` with every string value containing ``secret`` redacted.

    Keys stay as they are: they are only looked up, never shown, and rewriting
    them would break parsing whenever the token happens to be a substring of a
    field name."""
    if not secret:
        return node
    if isinstance(node, str):
        return node.replace(secret, REDACTED) if secret in node else node
    if isinstance(node, list):
        return [_scrub(item, secret) for item in node]
    if isinstance(node, dict):
        return {k: _scrub(v, secret) for k, v in node.items()}
    return node


def _retryable(error: LynxError) -> bool:
    return isinstance(error, RateLimitedError | ServerError | TimeoutError_ | ConnectionFailed)
