"""The typed failures of a request to the Lynx API.

Each carries a ``reason``, the ``nayax_ev_poll_errors_total`` label (the closed set
is ``exporter.stats.POLL_ERROR_REASONS``), and a message of our own that never
quotes a token nor the HTTP library's exception texts.
"""

from __future__ import annotations


class LynxError(Exception):
    """A request that produced no usable answer. ``reason`` is a metric label."""

    reason = "error"

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class AuthError(LynxError):
    reason = "auth"


class ExchangeFailed(AuthError):
    """The vendor refused to exchange a refresh token (401, 403, 429, 5xx...)."""

    def __init__(self, message: str, *, status: int | None, retry_after: float | None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after  # a 429's, for the exchange's back-off


class NotFoundError(LynxError):
    reason = "not_found"


class ClientRequestError(LynxError):
    reason = "client_error"


class RedirectError(LynxError):
    """A 3xx: never followed (the token must not go where ``Location`` points)."""

    reason = "redirect"


class RateLimitedError(LynxError):
    """The API answered 429."""

    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, attempts: int = 1) -> None:
        super().__init__(message, status=429, attempts=attempts)
        self.retry_after = retry_after  # seconds the vendor asked us (or we chose) to wait


class TokenHeld(Exception):
    """No request was sent: a 429 holds the token until ``until`` (monotonic
    seconds). Not a failure, so not a :class:`LynxError`: the poll waits for
    the hold (the poller defers it) and goes out again."""

    def __init__(self, until: float) -> None:
        super().__init__("token held after HTTP 429; no request sent")
        self.until = until


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
