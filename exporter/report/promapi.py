"""The Prometheus HTTP API, as far as the reports need it: ``/api/v1/series`` and
instant ``/api/v1/query`` (POST, so long selectors fit), with the settings of
``--http.config.file``. Every failure becomes a :class:`PrometheusError` whose
message names the cause and never a credential.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from exporter import __version__
from exporter.report.httpconfig import HTTPSettings

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a planned query answers a few KB; a listing a few MB
RETRY_DELAYS = (1.0, 4.0)  # seconds before the 2nd and 3rd attempt of a query
_RETRY_STATUS = frozenset({502, 503, 504})
_ERROR_TEXT_LIMIT = 400


class PrometheusError(Exception):
    """Prometheus unreachable, refusing, or answering something unusable."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


def base_url(text: str) -> str:
    """The validated ``--prometheus.url``, without a trailing slash. Pure.

    Raises ValueError. A user or password in the URL is refused: it would sit in
    the shell history and the process list; ``--http.config.file`` carries them."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("--prometheus.url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "--prometheus.url must not carry a user or password; "
            "put basic_auth in --http.config.file"
        )
    if parts.query or parts.fragment:
        raise ValueError("--prometheus.url must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class PrometheusAPI:
    """One client for all threads (a session per thread: requests' sessions are not
    meant to be shared)."""

    def __init__(self, url: str, settings: HTTPSettings, timeout: float) -> None:
        self.url = url
        self.settings = settings
        self.timeout = timeout  # the server's query timeout; the socket waits 10 s more
        self._local = threading.local()
        self._lock = threading.Lock()
        self.warnings: set[str] = set()  # Prometheus' own (a partial remote read, ...)

    def series(self, selector: str, start: float, end: float) -> list[dict[str, str]]:
        """Label sets with samples in [start, end]."""
        data = self._call("series", {"match[]": selector, "start": start, "end": end}, 1)
        if not isinstance(data, list) or not all(_labels(item) for item in data):
            raise PrometheusError(f"{self.url}: /api/v1/series answered an unexpected shape")
        return data

    def vector(self, expr: str, at: float, attempts: int = 1 + len(RETRY_DELAYS)) -> list[Sample]:
        """An instant query that must answer a vector."""
        params = {"query": expr, "time": at, "timeout": f"{self.timeout:g}s"}
        data = self._call("query", params, attempts)
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"{self.url}: the query did not answer a vector")
        try:
            samples = [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]
        except (TypeError, KeyError, IndexError, ValueError):
            samples = None
        if samples is None or not all(_labels(sample.labels) for sample in samples):
            raise PrometheusError(f"{self.url}: the query answered malformed samples")
        return samples

    def _call(self, endpoint: str, params: Mapping[str, object], attempts: int) -> object:
        for attempt in range(attempts):
            try:
                return self._once(endpoint, params)
            except _Retryable as retryable:
                if attempt + 1 >= attempts:
                    raise PrometheusError(str(retryable)) from None
                time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, endpoint: str, params: Mapping[str, object]) -> object:
        where = f"{self.url}/api/v1/{endpoint}"
        try:
            with self._session().post(
                where,
                data=params,
                timeout=(10.0, self.timeout + 10.0),
                allow_redirects=self.settings.follow_redirects,
                stream=True,
            ) as response:
                body = _bounded_body(response, where)
                status = response.status_code
        except requests.exceptions.SSLError as exc:
            raise PrometheusError(f"TLS with {self.url} failed: {_cause(exc)}") from None
        except requests.exceptions.Timeout:
            raise _Retryable(f"{where}: no answer within {self.timeout + 10:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise _Retryable(f"cannot reach Prometheus at {self.url}: {_cause(exc)}") from None
        data, warnings = _data(where, status, body)
        if warnings:
            with self._lock:
                self.warnings.update(warnings)
        return data

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _new_session(self.settings)
            self._local.session = session
        return session


class _Retryable(Exception):
    """A failure worth another attempt: the network, or 502/503/504."""


def _new_session(settings: HTTPSettings) -> requests.Session:
    session = requests.Session()
    session.trust_env = settings.proxy_from_environment  # as Prometheus: no env proxy unless asked
    session.headers["User-Agent"] = f"nayax-ev-exporter-report/{__version__}"
    if settings.authorization is not None:
        session.headers["Authorization"] = settings.authorization.reveal()
    if settings.insecure_skip_verify:
        session.verify = False
    elif settings.ca_file is not None:
        session.verify = str(settings.ca_file)
    if settings.cert_file is not None and settings.key_file is not None:
        session.cert = (str(settings.cert_file), str(settings.key_file))
    if settings.proxy_url is not None:
        session.proxies = {"http": settings.proxy_url, "https": settings.proxy_url}
    return session


def _bounded_body(response: requests.Response, where: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise PrometheusError(
                f"{where}: answer larger than {MAX_RESPONSE_BYTES // 2**20} MiB; refused"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _data(where: str, status: int, body: bytes) -> tuple[object, list[str]]:
    """The ``data`` and ``warnings`` of a success envelope; otherwise the failure, named."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {}
    if status == 200 and envelope.get("status") == "success" and "data" in envelope:
        warnings = envelope.get("warnings")
        texts = (
            [_one_line(w) for w in warnings if isinstance(w, str)]
            if isinstance(warnings, list)
            else []
        )
        return envelope["data"], texts
    if status in (401, 403):
        raise PrometheusError(
            f"{where}: HTTP {status}: not authorized; check the credentials in --http.config.file"
        )
    detail = _server_error(envelope)
    message = f"{where}: HTTP {status}{': ' + detail if detail else ''}"
    kind = envelope.get("errorType")
    if kind == "timeout" or "too many samples" in detail:  # the same query would fail again
        raise PrometheusError(f"{message} (a smaller --query.max-points makes queries lighter)")
    if status in _RETRY_STATUS:
        raise _Retryable(message)
    raise PrometheusError(message)


def _server_error(envelope: Mapping[str, object]) -> str:
    """Prometheus' own ``errorType: error``, shortened and on one line."""
    kind, error = envelope.get("errorType"), envelope.get("error")
    return _one_line(": ".join(part for part in (kind, error) if isinstance(part, str) and part))


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text[:_ERROR_TEXT_LIMIT] + ("..." if len(text) > _ERROR_TEXT_LIMIT else "")


def _labels(item: object) -> bool:
    return isinstance(item, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in item.items()
    )


def _cause(exc: BaseException) -> str:
    """The operating system's or OpenSSL's reason inside a requests exception
    ("Connection refused", "certificate verify failed ..."): no URL, no header."""
    reason = type(exc).__name__
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror
        pending += [current.__context__, current.__cause__, getattr(current, "reason", None)]
        pending += current.args
    return reason
