"""The Lynx API client: one evDashboard request, with retries, pacing and typed errors.

Errors carry a ``reason`` that becomes the ``nayax_ev_poll_errors_total`` label.
No message produced here ever contains the token: requests' own exception texts
are replaced by our own, which name only the status or the error class.
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from exporter.config import LynxConfig, Secret
from exporter.ratelimit import RateLimiter, TokenGate

USER_AGENT_PREFIX = "nayax-ev-exporter"
# Sent with every request as "<poll id> <attempt>/<attempts allowed>": the retries of
# one poll share the id, so the vendor's logs (and the simulator) can tell a retry
# from a new poll, as AWS SDKs do with amz-sdk-invocation-id / amz-sdk-request.
ATTEMPT_HEADER = "X-Request-Attempt"
# An evDashboard answer is a few hundred bytes; anything this large is not one, and
# reading it unbounded would let a broken upstream exhaust our memory.
MAX_BODY_BYTES = 1 << 20
REDACTED = "<redacted>"

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
        self._headers = {k: str(v) for k, v in self._session.headers.items()}  # all str here
        # Proxy settings from the environment (HTTPS_PROXY, NO_PROXY, ...) are read
        # once here, not on every request: requests' per-request environment lookup
        # was a measurable share of the exporter's CPU. trust_env off also keeps a
        # ~/.netrc from replacing our Authorization header.
        self._session.proxies = requests.utils.get_environ_proxies(config.base_url)
        self._session.trust_env = False

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
        secret = token.reveal()
        attempts_allowed = self._config.max_retries + 1
        poll_id = f"{self._rng.getrandbits(64):016x}"
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
            headers = {
                "Authorization": f"Bearer {secret}",
                ATTEMPT_HEADER: f"{poll_id} {attempt + 1}/{attempts_allowed}",
            }
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
        timeout = self._config.timeout
        started = time.perf_counter()
        try:
            response = self._session.send(
                self._prepare(url, params, headers), timeout=timeout, stream=True
            )
            try:
                # requests' timeout bounds each socket read, not the answer: a body
                # that trickles in (or stalls after a first chunk) would hold this
                # worker indefinitely. The whole answer must arrive by the deadline.
                body = _read_body(response, started + timeout)
            finally:
                response.close()
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError, _DeadlinePassed):
            self._observe("timeout", time.perf_counter() - started)
            raise TimeoutError_(f"no answer within {timeout:g}s") from None
        except _BodyTooLarge:
            self._observe(str(response.status_code), time.perf_counter() - started)
            raise BadPayloadError(
                f"HTTP {response.status_code} with a body over {MAX_BODY_BYTES} bytes",
                status=response.status_code,
            ) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3's own errors surface here because the body is read from the raw
            # stream: a reset mid-body is a ProtocolError, and a stall mid-body is the
            # ReadTimeoutError above (requests would have called it a ConnectionError).
            self._observe("connection", time.perf_counter() - started)
            raise ConnectionFailed(f"connection failed ({_cause_name(exc)})") from None
        duration = time.perf_counter() - started
        status = response.status_code
        self._observe(str(status), duration)
        if status == 200:
            try:
                payload = json.loads(body, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError, RecursionError):
                # RecursionError: deeply nested JSON is as unusable as broken JSON.
                content_type = response.headers.get("Content-Type", "?").split(";")[0]
                raise BadPayloadError(
                    "HTTP 200 with a body that is not JSON (Content-Type "
                    f"{_redact(content_type, token)[:60]})",
                    status=status,
                ) from None
            # An upstream that reflects request headers into its answer must not get
            # our token into a parse-problem message, the landing page or a log line.
            secret = token.reveal()
            # Walking the payload is skipped when the body plainly cannot hold the
            # token: no occurrence and no JSON escape that could spell it.
            echoed = b"\\" in body or secret.encode() in body
            return Answer(
                payload=_scrub(payload, secret) if echoed else payload,
                status=status,
                attempts=attempt,
                duration=duration,
            )
        raise self._status_error(status, response.headers.get("Retry-After"), token)

    def _prepare(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> requests.PreparedRequest:
        """The request, prepared here rather than by ``Session.request``: its
        generic merging of params, cookies, auth and hooks was about a sixth of
        the CPU of each poll. The query is our own (dates and ids), so the
        standard encoding is all it needs."""
        prepared = requests.PreparedRequest()  # body None, default hooks, no cookies
        prepared.method = "GET"
        prepared.url = f"{url}?{urlencode(params)}" if params else url
        merged = CaseInsensitiveDict(self._headers)
        merged.update(headers)
        prepared.headers = merged
        return prepared

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


class _DeadlinePassed(Exception):
    """The answer did not complete within the timeout."""


class _BodyTooLarge(Exception):
    """The answer exceeded MAX_BODY_BYTES."""


def _read_body(response: requests.Response, deadline: float) -> bytes:
    """The whole (decoded) body, or _DeadlinePassed once ``deadline`` (perf_counter) passes.

    Each read waits at most until the deadline: the socket's timeout is lowered to the
    time left (urllib3 resets it before the connection's next request)."""
    raw = response.raw
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _DeadlinePassed
        if isinstance(sock, socket.socket):
            sock.settimeout(remaining)
        chunk = raw.read1(65536, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)


def _redact(text: str, token: Secret) -> str:
    secret = token.reveal()
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
