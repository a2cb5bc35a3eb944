"""The HTTP edge: /metrics, the landing page, health, readiness and reload.

A thread per connection (daemon threads) with a socket timeout, so a slow or
stuck client holds only its own thread and never blocks another scrape.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.webconfig import WebConfig

CLIENT_TIMEOUT = 30.0  # seconds a client may take to send its request


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes | tuple[bytes, ...]  # chunks are written one after the other
    headers: dict[str, str]


def text(status: int, body: str) -> Response:
    return Response(status, body.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})


class Routes:
    """What the server calls; implemented by the daemon."""

    telemetry_path: str = "/metrics"

    def metrics(self, accept: str | None, accept_encoding: str | None) -> Response:
        raise NotImplementedError

    def landing(self) -> Response:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def healthy(self) -> bool:
        """False when a background thread the exporter needs has died."""
        return True

    def reload(self) -> Sequence[str]:
        """Reload the config; returns the errors (empty on success)."""
        raise NotImplementedError


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9877`` → ("", 9877); ``127.0.0.1:9877``; ``[::1]:9877``."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--web.listen-address must be HOST:PORT or :PORT, got {address!r}")
    host = host.strip("[]")
    return host, int(port_text)


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT
    server_version = "nayax-ev-exporter"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # in this thread, under the socket timeout
            web = self.server.web_config
            if web is not None and not web.client_allowed(self.connection.getpeercert()):
                raise ConnectionRefusedError("client certificate has no allowed SAN")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access logs are not wanted at scrape frequency

    def _send(self, response: Response, head_only: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        chunks = response.body if isinstance(response.body, tuple) else (response.body,)
        self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
        self.send_header("X-Content-Type-Options", "nosniff")
        web = self.server.web_config
        for name, value in web.headers if web is not None else ():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            for chunk in chunks:
                self.wfile.write(chunk)

    def _authorised(self) -> bool:
        web = self.server.web_config
        if web is None or web.check_basic_auth(self.headers.get("Authorization")):
            return True
        response = text(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="nayax-ev-exporter"'
        self._send(response)
        return False

    def _route(self, method: str) -> Response:
        routes = self.server.routes
        path = self.path.split("?", 1)[0]
        if method == "POST":
            if path == "/-/reload":
                errors = routes.reload()
                if errors:
                    return text(500, "failed to reload config:\n" + "\n".join(errors) + "\n")
                return text(200, "OK\n")
            return text(405 if path in ("/-/healthy", "/-/ready") else 404, "Not allowed\n")
        if path == routes.telemetry_path:
            return routes.metrics(self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
        if path == "/":
            return routes.landing()
        if path == "/-/healthy":
            return text(200, "Healthy\n") if routes.healthy() else text(503, "Unhealthy\n")
        if path == "/-/ready":
            return text(200, "Ready\n") if routes.ready() else text(503, "Not ready\n")
        if path == "/-/reload":
            return text(405, "Use POST to reload\n")
        return text(404, "Not found\n")

    def _handle(self, method: str) -> None:
        if not self._authorised():
            return
        try:
            response = self._route(method)
        except Exception as exc:  # /metrics must answer even when a route has a bug
            response = text(500, f"internal error: {type(exc).__name__}\n")
        self._send(response, head_only=method == "HEAD")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))  # drain a small body, ignore it
        self._handle("POST")


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a burst of connections must not push a scrape into SYN retry

    def __init__(
        self,
        address: tuple[str, int],
        routes: Routes,
        web_config: WebConfig | None = None,
    ) -> None:
        self.routes = routes
        self.web_config = web_config
        self._ssl: ssl.SSLContext | None = web_config.ssl_context() if web_config else None
        host = address[0]
        if host == "" or ":" in host:
            # ":9877" listens on every address, IPv6 and IPv4, like Go's net.Listen.
            self.address_family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
            if host == "" and not socket.has_ipv6:
                address = ("0.0.0.0", address[1])
            elif host == "":
                address = ("::", address[1])
        try:
            super().__init__(address, _Handler)
        except OSError:
            if address[0] != "::":
                raise
            self.address_family = socket.AF_INET  # IPv6 disabled on this host
            super().__init__(("0.0.0.0", address[1]), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.settimeout(CLIENT_TIMEOUT)
        if self._ssl is not None:
            # The handshake happens in the handler thread (do_handshake_on_connect
            # on first read), so a slow TLS client never blocks the accept loop.
            sock = self._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanished mid-request is not the exporter's error

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
