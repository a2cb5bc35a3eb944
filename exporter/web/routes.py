"""What each path answers: the HTTP routes, apart from the exporter's wiring.

The server (exporter/server.py) owns connections, limits, authentication and
request framing; it hands every request it accepted to :class:`Routes`, which
asks the exporter (anything shaped like :class:`Site`) for the content.

``POST /-/reload`` is a lifecycle endpoint, off by default like Prometheus'
``--web.enable-lifecycle``: when on, it refuses what a browser can send from
another site (an ``Origin`` or ``Sec-Fetch-Site`` that is not this site, a form's
content type), so a page the operator visits cannot reload the exporter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import urlsplit

RELOAD_PATH = "/-/reload"
LIFECYCLE_OFF = (
    "Lifecycle API is not enabled: start the exporter with --web.enable-lifecycle "
    "to reload over HTTP, or send it SIGHUP\n"
)
# The content types an HTML form (or a no-preflight fetch) can send to another site.
FORM_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes | tuple[bytes, ...]  # chunks are written one after the other
    headers: dict[str, str]


def html(body: bytes) -> Response:
    return Response(HTTPStatus.OK, body, {"Content-Type": "text/html; charset=utf-8"})


def text(status: int, body: str) -> Response:
    return Response(status, body.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})


@dataclass(frozen=True)
class Request:
    """The parts of an accepted request the routes look at (no body: none is read)."""

    method: str  # GET, HEAD or POST
    path: str  # without the query string
    headers: Mapping[str, str]  # names lower-cased


# The full target list, page by page (the landing page shows the first targets).
TARGET_PAGE = re.compile(r"/targets/([1-9][0-9]{0,5})")


class Site(Protocol):
    """What the routes need from the running exporter: content, never responses."""

    def metrics(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[tuple[bytes, ...], dict[str, str]]:
        """The exposition negotiated for these headers: body chunks and headers."""
        ...

    def landing(self) -> bytes:
        """The landing page's HTML."""
        ...

    def targets(self, page: int) -> bytes:
        """The HTML of page ``page`` (from 1) of the full target list."""
        ...

    def ready(self) -> bool: ...

    def healthy(self) -> bool:
        """False when a background thread the exporter needs has died."""
        ...

    def reload(self) -> Sequence[str]:
        """Reload the config; returns the errors (empty on success)."""
        ...


def cross_site_refusal(headers: Mapping[str, str]) -> Response | None:
    """Pure. Why a browser on another site may not make this request, or None.

    Browsers send ``Origin`` with every cross-origin POST and ``Sec-Fetch-Site``
    with every request; tools such as curl send neither. A form's content type is
    refused too: a reload takes no body, so only a browser form would send one."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return text(HTTPStatus.FORBIDDEN, f"cross-site request refused (Sec-Fetch-Site: {site})\n")
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers.get("host")):
        return text(HTTPStatus.FORBIDDEN, "cross-site request refused (Origin is not this host)\n")
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media in FORM_CONTENT_TYPES:
        return text(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"{RELOAD_PATH} takes no body; a form's {media} is refused\n",
        )
    return None


def _same_origin(origin: str, host: str | None) -> bool:
    if host is None or origin.strip().lower() == "null":
        return False
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        return False
    return netloc != "" and netloc.lower() == host.strip().lower()


class Routes:
    """Maps a request to a response; the site supplies the content."""

    def __init__(
        self, site: Site, *, telemetry_path: str = "/metrics", enable_lifecycle: bool = False
    ) -> None:
        self._site = site
        self.telemetry_path = telemetry_path
        self.enable_lifecycle = enable_lifecycle

    def handle(self, request: Request) -> Response:
        if request.method == "POST":
            return self._post(request)
        path = request.path
        if path == self.telemetry_path:
            headers = request.headers
            chunks, negotiated = self._site.metrics(
                headers.get("accept"), headers.get("accept-encoding")
            )
            return Response(HTTPStatus.OK, chunks, negotiated)
        if path == "/":
            return html(self._site.landing())
        page = TARGET_PAGE.fullmatch(path)
        if page is not None:
            return html(self._site.targets(int(page.group(1))))
        if path == "/-/healthy":
            if self._site.healthy():
                return text(HTTPStatus.OK, "Healthy\n")
            return text(HTTPStatus.SERVICE_UNAVAILABLE, "Unhealthy\n")
        if path == "/-/ready":
            if self._site.ready():
                return text(HTTPStatus.OK, "Ready\n")
            return text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
        if path == RELOAD_PATH:
            return text(HTTPStatus.METHOD_NOT_ALLOWED, "Use POST to reload\n")
        return text(HTTPStatus.NOT_FOUND, "Not found\n")

    def _post(self, request: Request) -> Response:
        if request.path != RELOAD_PATH:
            known = request.path in ("/-/healthy", "/-/ready", "/", self.telemetry_path)
            status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
            return text(status, "Not allowed\n")
        if not self.enable_lifecycle:
            return text(HTTPStatus.FORBIDDEN, LIFECYCLE_OFF)
        refusal = cross_site_refusal(request.headers)
        if refusal is not None:
            return refusal
        errors = self._site.reload()
        if errors:
            return text(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "failed to reload config:\n" + "\n".join(errors) + "\n",
            )
        return text(HTTPStatus.OK, "OK\n")
