"""The vendor's own ways, simulated: its error bodies, its request rules, its tokens.

- **Error bodies** as Lynx sends them, for every error the API routes answer (400,
  403, 404, 405, 429, 5xx): ``{"message", "errorKey", "errorCode", "errorMessage",
  "correlationId", "isUserError"}`` with a fresh correlation id (the shape seen on
  the vendor's QA system for 400 and 500; the vendor's ``errorKey``/``errorCode``
  values are not known, so the simulator names the HTTP status). A 401 is
  ``{"message": "Unauthorized", "isUserError": false, "errorKey": null}``.
- **evDashboard's rule** (strict mode, the default): ``TimePeriod`` *or* both
  ``StartDate`` and ``EndDate``, never both, never neither.
- **Scoped tokens**: ``POST /v1/issue-access-token`` with ``Authorization: jwt
  <refresh token>`` answers ``{"Token": <access token>}``, a JWT whose ``exp`` is
  ``lifetime`` seconds away (short lifetimes let tests watch a renewal); an access
  token past its ``exp`` (or revoked) answers 401 like any unknown token.

Pure helpers plus :class:`TokenIssuer`, whose state is behind a lock.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from exporter.simulator.replies import Reply, json_bytes, same

__all__ = [
    "ISSUE_PATH",
    "PERIOD_OR_DATES",
    "TokenIssuer",
    "dashboard_rule",
    "denial",
    "method_not_allowed",
    "unauthorized",
    "vendor_error",
]

# The exchange lives on its own host in production (https://lynx-api.nayax.com).
ISSUE_PATH: Final = re.compile(r"^(?:/operational)?/v1/issue-access-token/?$", re.I)
PERIOD_OR_DATES: Final = (
    "Please provide one of the parameters: TimePeriod or EndDate,StartDate. But not both"
)


def _status_key(status: int) -> str:
    """``"MethodNotAllowed"`` for 405: the status's phrase as one word. Pure."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "Error"
    return "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", phrase))


def vendor_error(
    status: int, message: str, *headers: tuple[str, str], key: str | None = None
) -> Reply:
    """A 4xx/5xx in the vendor's shape, with a fresh correlation id. ``key``: the
    ``errorKey`` (default: the status's phrase, e.g. ``NotFound``)."""
    doc = {
        "message": message,
        "errorKey": _status_key(status) if key is None else key,
        "errorCode": status,
        "errorMessage": message,
        "correlationId": str(uuid.uuid4()),
        "isUserError": status < 500,
    }
    return Reply(status, json_bytes(doc), headers=headers)


def unauthorized() -> Reply:
    """The vendor's 401 body: no detail, no correlation id."""
    doc = {"message": "Unauthorized", "isUserError": False, "errorKey": None}
    return Reply(401, json_bytes(doc), headers=(("WWW-Authenticate", "Bearer"),))


def denial(verdict: int) -> Reply | None:
    """The answer to an authorization verdict (0 allowed, 401, 403): None when
    allowed. Pure."""
    if verdict == 0:
        return None
    if verdict == 403:
        return vendor_error(403, "The token does not grant access to this actor")
    return unauthorized()


def method_not_allowed(allow: str) -> Reply:
    return vendor_error(405, "Method Not Allowed", ("Allow", allow))


def dashboard_rule(query: Mapping[str, str], time_periods: frozenset[int] | None) -> Reply | None:
    """evDashboard's rule: TimePeriod, or StartDate and EndDate; never both, never
    neither (keys lower-cased); and, when ``time_periods`` is given, only those
    TimePeriod codes (the vendor's QA system refused every code tried). None when
    the request keeps the rules. Pure."""
    period = query.get("timeperiod") or ""
    dates = [bool(query.get("startdate")), bool(query.get("enddate"))]
    if not ((period and not any(dates)) or (not period and all(dates))):
        return vendor_error(400, PERIOD_OR_DATES, key="InvalidParameters")
    if period and time_periods is not None:
        code = int(period) if re.fullmatch(r"[+-]?[0-9]{1,10}", period) else None
        if code not in time_periods:
            message = f"TimePeriod:{period[:32]} is not valid"
            return vendor_error(400, message, key="InvalidTimePeriod")
    return None


def _segment(doc: object) -> str:
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class _Issued:
    refresh: str
    expires_at: float  # Unix seconds


class TokenIssuer:
    """Refresh tokens the simulator accepts, and the access tokens it issued.

    ``refresh_tokens`` maps a refresh token to the actors its access tokens may read
    (None: all). ``lifetime`` is the access tokens' validity in seconds (the vendor's
    is 24 h); ``with_exp`` False issues tokens without an ``exp`` claim, ``exp``
    set claims that instead of the real expiry (the token stays valid for
    ``lifetime``). Setting ``fail_status`` makes every exchange fail with that
    status (``retry_after`` as the 429's header), ``answer`` makes every exchange
    answer 200 ``{"Token": answer}``, for tests of a vendor that refuses or errs."""

    def __init__(
        self,
        refresh_tokens: Mapping[str, Iterable[int] | None] | None = None,
        *,
        lifetime: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._refresh: dict[str, frozenset[int] | None] = {}
        self._issued: dict[str, _Issued] = {}
        self._serial = 0
        self.lifetime = lifetime
        self.with_exp = True
        self.exp: float | None = None
        self.answer: object = None
        self.fail_status: int | None = None
        self.retry_after: str | None = None
        self.signature = "sim"  # the JWT's third part (tests put a marker in it)
        self._clock = clock
        for token, actors in (refresh_tokens or {}).items():
            self.allow(token, actors)

    def allow(self, refresh: str, actors: Iterable[int] | None = None) -> None:
        with self._lock:
            self._refresh[refresh] = None if actors is None else frozenset(actors)

    def revoke(self, refresh: str | None = None) -> None:
        """Forget a refresh token (None: every one) and the access tokens it yielded."""
        with self._lock:
            for token in [t for t in self._refresh if refresh is None or t == refresh]:
                del self._refresh[token]
            self._issued = {k: v for k, v in self._issued.items() if v.refresh in self._refresh}

    def revoke_access(self) -> None:
        """Invalidate every access token issued so far (refresh tokens stay valid)."""
        with self._lock:
            self._issued.clear()

    def issued_count(self) -> int:
        with self._lock:
            return self._serial

    def issue(self, authorization: str | None) -> Reply:
        """The exchange: 200 ``{"Token": ...}``, or the vendor's 401."""
        scheme, _, refresh = (authorization or "").strip().partition(" ")
        refresh = refresh.strip()
        if self.fail_status is not None:
            headers = () if self.retry_after is None else (("Retry-After", self.retry_after),)
            return vendor_error(self.fail_status, "Token exchange refused", *headers)
        if self.answer is not None:
            return Reply(200, json_bytes({"Token": self.answer}))
        with self._lock:
            known = next((t for t in self._refresh if same(refresh, t)), None)
            if scheme.lower() != "jwt" or known is None:
                return unauthorized()
            self._serial += 1
            now = self._clock()
            claims: dict[str, object] = {"sub": f"sim-{self._serial}", "iat": int(now)}
            if self.with_exp:
                claims["exp"] = now + self.lifetime if self.exp is None else self.exp
            header = _segment({"alg": "none", "typ": "JWT"})
            token = f"{header}.{_segment(claims)}.{self.signature}"
            self._issued[token] = _Issued(known, now + self.lifetime)
        return Reply(200, json_bytes({"Token": token}))

    def check(self, token: str, actor_id: int | None) -> int | None:
        """For an access token this issuer knows: 0 (allowed), 401 (expired) or 403
        (another actor's); None when it never issued ``token``."""
        with self._lock:
            issued = self._issued.get(token)
            if issued is None:
                return None
            if self._clock() >= issued.expires_at:
                return 401
            actors = self._refresh.get(issued.refresh)
        if actor_id is None or actors is None or actor_id in actors:
            return 0
        return 403
