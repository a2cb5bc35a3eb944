"""The Lynx API client: one GET request, with retries, pacing and typed errors.

:meth:`LynxClient.get_json` serves every GET endpoint (evDashboard, machines,
machine status). The exchange
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
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from exporter.config import LynxConfig, RefreshToken, Secret
from exporter.lynx.errors import (
    AuthError,
    BadPayloadError,
    ClientRequestError,
    ConnectionFailed,
    ExchangeFailed,
    LynxError,
    NotFoundError,
    RateLimitedError,
    RedirectError,
    ServerError,
    Stopped,
    TimeoutError_,
    TokenHeld,
)
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.lynx.tokens import TokenBroker, usable_access_token
from exporter.lynx.transport import (
    ACCEPT_ENCODING,
    MAX_BODY_BYTES,
    Reply,
    RequestObserver,
    Transport,
)
from exporter.lynx.upstream import CUT_MARK, safe_text

USER_AGENT_PREFIX = "nayax-ev-exporter"
# Sent with every request as "<poll id> <attempt>/<attempts allowed>": the retries of
# one poll share the id, so the vendor's logs (and the simulator) can tell a retry
# from a new poll, as AWS SDKs do with amz-sdk-invocation-id / amz-sdk-request.
ATTEMPT_HEADER = "X-Request-Attempt"
REDACTED = "<redacted>"
# Left as it is in the query, where RFC 3986 allows it: the dates carry six, and a
# "%3A" sends urllib3 down its byte-by-byte re-encoding of the whole query (about
# a twelfth of the client's CPU per request).
QUERY_SAFE = ":"
__all__ = [  # the errors live in exporter.errors; callers import them from here
    "MAX_BODY_BYTES",
    "Answer",
    "AuthError",
    "BadPayloadError",
    "ClientRequestError",
    "ConnectionFailed",
    "Credential",
    "ExchangeFailed",
    "LynxClient",
    "LynxError",
    "NotFoundError",
    "RateLimitedError",
    "RedirectError",
    "RequestObserver",
    "ServerError",
    "Stopped",
    "TimeoutError_",
    "TokenHeld",
]

# What a request authenticates with: a token sent as Bearer as it is, or a
# RefreshToken (a Secret too), exchanged for the access tokens sent as Bearer.
Credential = Secret
EXCHANGE_PATH = "/v1/issue-access-token"


@dataclass(frozen=True)
class Answer:
    """What a request kind gets back: the decoded JSON of a 2xx, after retries.

    Not the transport's :class:`~exporter.lynx.transport.Reply`, which is one HTTP
    exchange (status, headers, raw bytes, whatever the status) and never leaves
    ``lynx/``: the client turns replies into an Answer or a typed LynxError."""

    payload: object
    status: int
    attempts: int
    duration: float  # seconds of the last attempt


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    text = value.strip()[:MAX_RETRY_AFTER_CHARS]
    if _DELTA_SECONDS.fullmatch(text):  # ASCII digits only: "²".isdigit() is True
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# A Retry-After is a few digits or an HTTP-date (29 characters); the token gate caps
# any hold at lynx.retry_after_max, so nothing longer than ten years needs reading.
MAX_RETRY_AFTER_CHARS = 64
MAX_RETRY_AFTER = 10 * 365 * 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]+")


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
        on_secret: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self._config = config
        self._observe = observer
        self._limiter = rate_limiter
        self._gate = token_gate
        self._stop = stop
        self._rng = rng or random.Random()
        self._clock = sleep_clock
        headers = {
            "User-Agent": f"{USER_AGENT_PREFIX}/{version}",
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        self._transport = Transport(
            timeout=config.timeout,
            pool_size=max(1, config.max_concurrency),
            headers=headers,
            observer=observer,
        )
        # Access tokens for refresh tokens; each new one is announced (on_secret) so
        # the log scrubber knows it.
        self._tokens = TokenBroker(self.exchange_refresh_token, on_token=on_secret)

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"LynxClient(base_url={self._config.base_url!r})"

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with "full jitter" in [base/2, cap]."""
        ceiling = min(self._config.retry_backoff_max, self._config.retry_backoff * 2**attempt)
        return float(ceiling / 2 + self._rng.random() * ceiling / 2)

    def get_json(self, path: str, params: Mapping[str, str], credential: Credential) -> Answer:
        """GET ``{base_url}{path}?{params}`` and decode its JSON answer, retrying what
        is worth retrying. Raises a :class:`LynxError` subclass, or :class:`TokenHeld`
        when nothing was sent because a 429 holds the token."""
        url = f"{self._config.base_url}{path}"
        if params:
            url = f"{url}?{urlencode(params, safe=QUERY_SAFE)}"
        attempts_allowed = self._config.max_retries + 1
        poll_id = f"{self._rng.getrandbits(64):016x}"
        last_error: LynxError | None = None
        for attempt in range(attempts_allowed):
            self._pace(attempt, last_error, credential.reveal())
            header = f"{poll_id} {attempt + 1}/{attempts_allowed}"
            try:
                return self._authorized(url, header, credential, attempt + 1)
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
        the rate limit. Raises Stopped on shutdown, TokenHeld when another poll's
        429 holds the token (nothing is sent)."""
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
        # leaves at once, without a request (the poller defers it); only a poll
        # retrying after its own 429 (or back-off) waits, no longer than
        # retry_backoff_max. This is the one place a hold is checked.
        until = self._gate.held_until(secret)
        if until is not None and self._gate.delay(secret) > (
            self._config.retry_backoff_max if attempt else 0.0
        ):
            raise TokenHeld(until)
        if not self._gate.wait(secret, self._stop) or not self._limiter.acquire(self._stop):
            raise Stopped("shutting down", attempts=attempt)

    def _authorized(self, url: str, attempt_header: str, credential: Credential, n: int) -> Answer:
        """One attempt with the credential's bearer token. A refresh token's access
        token that gets a 401 is renewed and the request sent once more, before the
        401 counts: the vendor may revoke an access token before its ``exp``."""
        if not isinstance(credential, RefreshToken):
            return self._attempt(url, attempt_header, credential.reveal(), (), n)
        access = self._tokens.access(credential)
        try:
            answer = self._attempt(url, attempt_header, credential.reveal(), (access,), n)
        except AuthError as error:
            if error.status != 401:
                raise
            self._tokens.rejected(credential, access, error)
            access = self._tokens.access(credential)
            if not self._limiter.acquire(self._stop):
                raise Stopped("shutting down", attempts=n) from None
            answer = self._attempt(url, attempt_header, credential.reveal(), (access,), n)
        return answer

    def _attempt(
        self, url: str, attempt_header: str, key: str, access: tuple[Secret, ...], attempt: int
    ) -> Answer:
        """One request. ``key`` is the configured token (the 429 holds' key); it is
        sent as Bearer unless an ``access`` token, exchanged for it, is given."""
        secret = access[0].reveal() if access else key
        headers = {"Authorization": _scheme("Bearer", secret), ATTEMPT_HEADER: attempt_header}
        reply = self._transport.exchange("GET", url, headers)
        status = reply.status
        if not 200 <= status < 300:
            raise self._status_error(reply, key, (key, secret))
        assert reply.body is not None
        try:
            payload = json.loads(reply.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: deeply nested JSON is as unusable as broken JSON.
            content_type = reply.headers.get("Content-Type", "?").split(";")[0]
            shown = safe_text(_redact(_redact(content_type, secret), key), MAX_QUOTED_HEADER)
            raise BadPayloadError(
                f"HTTP {status} with a body that is not JSON (Content-Type {shown})",
                status=status,
            ) from None
        # An upstream that reflects request headers into its answer must not get
        # our token into a parse-problem message, the landing page or a log line.
        # Walking the payload is skipped when the body plainly cannot hold the
        # token: no occurrence and no JSON escape that could spell it.
        for hidden in {key, secret}:
            if b"\\" in reply.body or hidden.encode() in reply.body:
                payload = _scrub(payload, hidden)
        failure = vendor_failure(payload, (key, secret))
        if failure is not None:
            raise BadPayloadError(
                f"HTTP {status} with a failure in its body: {failure}", status=status
            )
        return Answer(payload=payload, status=status, attempts=attempt, duration=reply.duration)

    def _status_error(self, reply: Reply, key: str | None, secrets: tuple[str, ...]) -> LynxError:
        """The typed error for a non-2xx answer, quoting the vendor's own message and
        correlation id (scrubbed) when its body carries them. A 429 holds ``key``."""
        status = reply.status
        if 300 <= status < 400:
            return RedirectError(f"HTTP {status}: redirect not followed", status=status)
        said = vendor_detail(reply.body, secrets)
        if status in (401, 403):
            return AuthError(f"HTTP {status}: token rejected{said}", status=status)
        if status == 404:
            return NotFoundError(f"HTTP 404: unknown actor or machine{said}", status=status)
        if status == 429:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"))
            hold = retry_after if retry_after is not None else self.backoff(0)
            if key is not None:
                self._gate.hold(key, hold)
            return RateLimitedError(f"HTTP 429: rate limited{said}", retry_after=hold)
        if status >= 500:
            return ServerError(f"HTTP {status}: server error{said}", status=status)
        return ClientRequestError(f"HTTP {status}: request rejected{said}", status=status)

    def exchange_refresh_token(self, refresh: RefreshToken) -> str:
        """``POST {auth_url}/v1/issue-access-token`` with ``Authorization: jwt
        <refresh>``: the access token's text. An answer other than a 200 carrying a
        usable token is an AuthError; no answer is the transport's error."""
        url = f"{refresh.auth_url}{EXCHANGE_PATH}"
        secret = refresh.reveal()
        reply = self._transport.exchange("POST", url, {"Authorization": _scheme("jwt", secret)})
        if reply.status != 200:
            error = self._status_error(reply, None, (secret,))
            raise ExchangeFailed(
                f"access token exchange failed: {error}",
                status=reply.status,
                retry_after=getattr(error, "retry_after", None),
            )
        assert reply.body is not None
        try:
            payload = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            payload = None
        token = payload.get("Token") if isinstance(payload, dict) else None
        if not usable_access_token(token):
            # The vendor's reason if it sent one, never the token: a malformed one
            # may still be a real access token, badly framed.
            said = "" if isinstance(token, str) else vendor_detail(reply.body, (secret,))
            raise AuthError(
                f"access token exchange answered HTTP 200 without a usable token{said}",
                status=200,
            )
        return token

    def token_expiry(self, credential: Credential) -> float | None:
        """Unix seconds the credential's access token expires (refresh tokens only):
        0 when exchanges failed and none is held, None for a static token."""
        if not isinstance(credential, RefreshToken):
            return None
        return self._tokens.expiry(credential)


def _sendable(secret: str) -> bool:
    """Pure: whether a header can carry ``secret`` (printable ASCII, one line)."""
    return _PRINTABLE_ASCII.fullmatch(secret) is not None


# One regular expression rather than a check per character: an access token is a
# JWT of several hundred characters, checked on every request.
_PRINTABLE_ASCII = re.compile(r"[ -~]+")


def _scheme(scheme: str, secret: str) -> str:
    """The Authorization value, or AuthError for a token no header can carry: the
    HTTP stack's own complaint would quote the whole header, token included."""
    if not _sendable(secret):
        raise AuthError("the token holds a character an HTTP header cannot carry")
    return f"{scheme} {secret}"


# Fields of the vendor's error bodies: {"message", "errorKey", "errorCode",
# "errorMessage", "correlationId", "isUserError", ...}. A dashboard, a machine list
# or a machine status never has these.
_FAILURE_FIELDS = frozenset({"errorKey", "errorCode", "errorMessage", "isUserError"})
MAX_VENDOR_TEXT = 200  # characters of the vendor's message quoted in an error
MAX_CORRELATION_ID = 64
MAX_QUOTED_HEADER = 60  # characters of an upstream header (Content-Type) quoted


def vendor_detail(body: bytes | None, secrets: tuple[str, ...]) -> str:
    """Pure: ``': "<message>" (correlationId <id>)'`` from a vendor error body, the
    token(s) scrubbed, control characters dropped and both cut to a sane length;
    empty when the body is no JSON object carrying them."""
    if not body:
        return ""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    return _detail_of(payload, secrets) if isinstance(payload, dict) else ""


def vendor_failure(payload: object, secrets: tuple[str, ...]) -> str | None:
    """Pure: the vendor's message when a 2xx body is a failure object instead of
    data (some Lynx endpoints answer 200 with one); None when it is not."""
    if not isinstance(payload, dict) or not _FAILURE_FIELDS & payload.keys():
        return None
    return _detail_of(payload, secrets).removeprefix(": ") or "no message"


def _detail_of(payload: dict[str, object], secrets: tuple[str, ...]) -> str:
    message = _clean(payload.get("message"), secrets, MAX_VENDOR_TEXT)
    if not message:
        message = _clean(payload.get("errorMessage"), secrets, MAX_VENDOR_TEXT)
    correlation = _clean(payload.get("correlationId"), secrets, MAX_CORRELATION_ID)
    parts = [f'"{message}"'] if message else []
    if correlation:
        parts.append(f"(correlationId {correlation})")
    return ": " + " ".join(parts) if parts else ""


def _clean(value: object, secrets: tuple[str, ...], limit: int) -> str:
    """Pure: a vendor-supplied string or number as safe, short, one-line text
    (through the upstream boundary's :func:`safe_text`)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    # str() of an int over 4,300 digits raises; no correlation id is that long.
    text = value if isinstance(value, str) else str(value) if abs(value) < 10**64 else ""
    for secret in secrets:  # before any cut, which could leave part of a token
        text = _redact(text, secret)
    text = " ".join(safe_text(text, limit * 4).split()).replace('"', "'")
    return text if len(text) <= limit else text[: limit - 1] + CUT_MARK


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
