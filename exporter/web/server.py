"""The HTTP edge: connections, their limits, authentication and request framing.

A thread per connection (daemon threads), so a slow client holds only its own
thread and never blocks another scrape. What a path answers is decided by
:class:`exporter.routes.Routes`; this module decides which requests get there:

- At most ``max_connections`` at once (``--web.max-connections``). A newcomer
  over the cap closes the connection that has waited longest for a request (an
  idle keep-alive, a silent or trickling client); a scrape that arrives during a
  flood of idle sockets is therefore served. Only if every connection is busy
  answering is the newcomer closed.
- Deadlines for the whole of a phase, not per read: a new connection has
  ``REQUEST_DEADLINE`` for its TLS handshake and whole request head; a kept-alive
  one ``IDLE_TIMEOUT`` for the next request to start, then ``REQUEST_DEADLINE``;
  a response ``RESPONSE_DEADLINE`` to be written. A watchdog thread closes a
  connection past its deadline (headers trickled a byte at a time are cut off).
- A request head is at most ``MAX_HEAD_BYTES``; no request body is ever read.
  No endpoint takes one: a request that announces a body (``Content-Length``
  above 0, any ``Transfer-Encoding``) is answered (401 first, if unauthorised,
  else 413/400) and its connection closed, so the body can never be read as a
  further request. Authentication is decided from the headers alone.
- Every header line must be well-formed (RFC 9112 section 5): whitespace
  between a name and its colon, a folded line (starting with whitespace), a
  line without a colon or a CR or NUL in a value is answered 400 and the
  connection closed, before authentication, as a malformed request line is.
  Python's parser would end the headers at such a line and ignore the rest
  (``Content-Length : 38`` with them), so a proxy in front could frame the
  bytes differently (request smuggling).
- While a password is checked (exporter/basicauth.py: bounded hashing slots)
  the connection counts as waiting, not busy: a newcomer may evict it, which
  wakes the check, so checks queued by a flood never lock out a scrape.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import os
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from exporter.config.web import WebConfig
from exporter.web.basicauth import SLOT_WAIT, BasicAuth, Interrupt, Verdict
from exporter.web.routes import Request, Response, Routes, text

DEFAULT_MAX_CONNECTIONS = 64
REQUEST_DEADLINE = 10.0  # seconds: TLS handshake and request head, from accept / first byte
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait for its next request
RESPONSE_DEADLINE = 60.0  # seconds to write one response (a client reading slowly)
BUSY_EVICTABLE_AFTER = 5.0  # a response still being written after this may make room
SOCKET_TIMEOUT = 30.0  # per read/write; the deadlines above are the real bounds
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
FD_RESERVE = 64  # descriptors kept for upstream sockets, files and logs
WATCHDOG_PERIOD = 0.25  # seconds between deadline checks while connections are open


# Parts per sendmsg: the kernel's limit on an I/O vector (Linux: 1024). A body of
# more parts (the /metrics segments) takes one call per IOV_MAX.
def _iov_max() -> int:
    limit = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else -1
    return limit if limit > 0 else 1024  # -1: no limit reported


IOV_MAX = _iov_max()
TLS_WRITE_BYTES = 1 << 20  # bytes per sendall of a TLS response: parts joined up to this
_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9877`` → ("", 9877); ``127.0.0.1:9877``; ``[::1]:9877``."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--web.listen-address must be HOST:PORT or :PORT, got {address!r}")
    host = host.strip("[]")
    return host, int(port_text)


def check_open_files(max_connections: int) -> None:
    """Refuse a connection cap the open-files limit cannot carry: past it, accept()
    fails and every scrape with it (the limit's reserve is for upstream sockets,
    the config and token files, logs)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and max_connections > soft - FD_RESERVE:
        raise ValueError(
            f"--web.max-connections={max_connections} does not fit the open-files limit "
            f"({soft}, of which {FD_RESERVE} are kept for the rest): lower it or raise "
            "the limit (ulimit -n)"
        )


@dataclass
class _Tracked:
    deadline: float  # monotonic
    since: float  # monotonic start of the current phase
    busy: bool  # answering a request (not evictable until BUSY_EVICTABLE_AFTER)
    on_cut: Callable[[], None] | None = None  # wakes the handler's waits when cut


def _cut(sock: socket.socket) -> None:
    """Wake whatever thread reads or writes ``sock``: its call returns EOF or fails.
    The plain socket's shutdown, also for TLS (never touching the SSL object)."""
    with contextlib.suppress(OSError):  # already gone
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def send_all(sock: socket.socket, parts: Sequence[bytes]) -> None:
    """Every byte of ``parts``, in order, in as few ``sendmsg`` calls as the
    kernel allows: one per IOV_MAX parts on a blocking socket, unless a signal
    cuts one short."""
    views = [memoryview(part) for part in parts if part]
    first = 0  # the first view not wholly sent
    while first < len(views):
        sent = sock.sendmsg(views[first : first + IOV_MAX])
        while first < len(views) and sent >= len(views[first]):
            sent -= len(views[first])
            first += 1
        if sent:
            views[first] = views[first][sent:]


def coalesced(parts: Sequence[bytes], size: int = TLS_WRITE_BYTES) -> Iterator[bytes]:
    """Pure. ``parts`` joined into pieces of about ``size`` bytes (a larger part
    alone): one ``sendall`` per piece instead of one per part."""
    batch: list[bytes] = []
    length = 0
    for part in parts:
        if batch and length + len(part) > size:
            yield b"".join(batch)
            batch, length = [], 0
        batch.append(part)
        length += len(part)
    if batch:
        yield b"".join(batch) if len(batch) > 1 else batch[0]


class ConnectionGuard:
    """Caps open connections and cuts off the ones past their deadline.

    A socket is cut only while registered, under the lock, and a handler
    unregisters before it closes: a cut never reaches a reused descriptor."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("--web.max-connections must be at least 1")
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _Tracked] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.evicted = 0  # for tests and the curious
        self.expired = 0

    def admit(self, sock: socket.socket) -> bool:
        """Register a new connection, making room if needed; False: refuse it."""
        now = self._clock()
        with self._lock:
            if len(self._open) >= self.limit and not self._evict_one(now):
                return False
            self._open[sock] = _Tracked(now + REQUEST_DEADLINE, now, busy=False)
        self._wake.set()
        return True

    def _evict_one(self, now: float) -> bool:
        """Under the lock: close the connection waiting longest for a request
        (else one whose response has been written for too long)."""
        waiting = [(t.since, id(s), s) for s, t in self._open.items() if not t.busy]
        if not waiting:
            stuck = now - BUSY_EVICTABLE_AFTER
            waiting = [(t.since, id(s), s) for s, t in self._open.items() if t.since < stuck]
        if not waiting:
            return False
        _, _, oldest = min(waiting)
        self._drop(oldest)
        self.evicted += 1
        return True

    def _drop(self, sock: socket.socket) -> None:
        """Under the lock: forget a connection, cut it and wake its handler."""
        tracked = self._open.pop(sock)
        _cut(sock)
        if tracked.on_cut is not None:
            tracked.on_cut()

    def on_cut(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the connection is cut (at once if it was)."""
        with self._lock:
            tracked = self._open.get(sock)
            if tracked is not None:
                tracked.on_cut = callback
                return
        callback()

    def phase(self, sock: socket.socket, seconds: float, *, busy: bool) -> None:
        """Start a phase of ``seconds`` for a connection (if it is still open)."""
        now = self._clock()
        with self._lock:
            tracked = self._open.get(sock)
            if tracked is not None:
                tracked.deadline, tracked.since, tracked.busy = now + seconds, now, busy

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def expire(self) -> None:
        """Cut every connection past its deadline."""
        now = self._clock()
        with self._lock:
            late = [s for s, t in self._open.items() if t.deadline <= now]
            for sock in late:
                self._drop(sock)
            self.expired += len(late)

    def watch(self) -> None:
        """The watchdog loop (a thread); returns after :meth:`close`."""
        while not self._closed.is_set():
            if not self._open:
                self._wake.wait()
                self._wake.clear()
                continue
            self.expire()
            self._closed.wait(WATCHDOG_PERIOD)

    def close(self) -> None:
        """Stop the watchdog and cut every open connection."""
        self._closed.set()
        self._wake.set()
        with self._lock:
            for sock in list(self._open):
                self._drop(sock)


class _HeadReader:
    """The request's reader while its head is parsed: at most ``budget`` bytes
    in all, beyond which the head is refused (431) instead of buffered."""

    def __init__(self, stream: io.BufferedReader, budget: int) -> None:
        self._stream = stream
        self._left = budget
        self.lines: list[bytes] = []  # as received: within the budget

    def readline(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            raise http.client.LineTooLong("request head")
        limit = self._left if size is None or size < 0 else min(size, self._left)
        line = self._stream.readline(limit)
        self._left -= len(line)
        self.lines.append(line)
        if self._left <= 0 and not line.endswith(b"\n"):
            raise http.client.LineTooLong("request head")
        return line


def malformed_field_line(lines: Sequence[bytes]) -> str | None:
    """Pure. Why the header lines of a request head (after the request line) are
    refused, or None. Python's header parser ends the headers at the first line
    it cannot read and drops the rest (``Content-Length : 5`` with them), so
    a front proxy and this server could frame the same bytes differently."""
    for line in lines:
        if line in (b"\r\n", b"\n", b""):
            return None
        if line[:1] in (b" ", b"\t"):
            return "obsolete line folding (RFC 9112 section 5.2)"
        name, colon, value = line.partition(b":")
        if not colon:
            return "a header line without a colon"
        if name.rstrip(b" \t") != name:
            return "whitespace between a header name and its colon (RFC 9112 section 5.1)"
        if _TOKEN.fullmatch(name) is None:
            return "a header name that is not a token"
        if b"\r" in value.removesuffix(b"\n").removesuffix(b"\r") or b"\0" in value:
            return "a CR or NUL in a header value"
    return None


def _declared_body(headers: Any) -> str | None:
    """Pure. Why the request's announced body is refused, or None if it has none."""
    if headers.get("Transfer-Encoding") is not None:
        return "400 no endpoint takes a request body (Transfer-Encoding refused)"
    lengths = headers.get_all("Content-Length") or []
    if not lengths:
        return None
    if len(lengths) > 1 or _DIGITS.fullmatch(lengths[0].strip()) is None:
        return "400 invalid Content-Length"
    if int(lengths[0]) > 0:
        return "413 no endpoint takes a request body"
    return None


def _refusal(verdict: Verdict) -> Response:
    """Pure. 401 for wrong credentials; 503 when the password could not be
    checked in time (every hashing slot taken): a retry may succeed."""
    if verdict is Verdict.BUSY:
        response = text(HTTPStatus.SERVICE_UNAVAILABLE, "Too many password checks; retry\n")
        response.headers["Retry-After"] = str(round(SLOT_WAIT))
        return response
    response = text(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
    response.headers["WWW-Authenticate"] = 'Basic realm="nayax-ev-exporter"'
    return response


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server_version = "nayax-ev-exporter"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self._stream = cast(io.BufferedReader, self.rfile)
        self._answered = 0
        web = self.server.web_config
        self._interrupt: Interrupt | None = None
        if web is not None and web.auth_required:
            # A password check waiting for a hashing slot stops when the guard
            # cuts this connection, and never hashes for it.
            self._interrupt = Interrupt()
            self.server.guard.on_cut(self.connection, self._interrupt.cut)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # in this thread, under the request deadline
            if web is not None and not web.client_allowed(self.connection.getpeercert()):
                raise ConnectionRefusedError("client certificate has no allowed SAN")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # access logs are not wanted at scrape frequency

    def handle_expect_100(self) -> bool:
        return True  # never invite a body: the final answer comes at once

    def handle_one_request(self) -> None:
        guard = self.server.guard
        if self._answered:
            # Kept alive: wait for the next request's first byte, then the
            # whole head has REQUEST_DEADLINE as a new connection's has.
            guard.phase(self.connection, IDLE_TIMEOUT, busy=False)
            try:
                if not self._stream.peek(1):
                    self.close_connection = True
                    return
            except OSError:
                self.close_connection = True
                return
            guard.phase(self.connection, REQUEST_DEADLINE, busy=False)
        self._head = _HeadReader(self._stream, MAX_HEAD_BYTES)
        self.rfile = cast(io.BufferedIOBase, self._head)
        try:
            super().handle_one_request()
        except http.client.LineTooLong:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request head too large")
        finally:
            self.rfile = self._stream
        self._answered += 1

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = malformed_field_line(self._head.lines[1:])
        if problem is None:
            return True
        # Answered before authentication, as a malformed request line is: the
        # head cannot be read reliably (Python's parser dropped the lines after
        # the bad one, Authorization perhaps among them).
        self.send_error(HTTPStatus.BAD_REQUEST, "Bad Request", f"Refused: {problem}.")
        return False

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
        if self.close_connection:
            self.send_header("Connection", "close")
        head = io.BytesIO()
        self.wfile, wfile = head, self.wfile  # the head goes out with the body
        try:
            self.end_headers()
        finally:
            self.wfile = wfile
        self._write((head.getvalue(), *(() if head_only else chunks)))

    def _write(self, parts: tuple[bytes, ...]) -> None:
        """Head and body in one blocking call: the kernel takes a large body at
        once. With a timeout, Python sends it in many non-blocking pieces, and a
        thread takes the GIL back after every call, which is slow while the
        pollers are busy (measured: docs/performance.md).
        A client that stops reading is still cut at RESPONSE_DEADLINE: the
        watchdog's shutdown wakes the blocked send."""
        sock = self.connection
        sock.settimeout(None)
        try:
            if isinstance(sock, ssl.SSLSocket):
                for piece in coalesced(parts):  # TLS has no scatter-gather send
                    sock.sendall(piece)
            else:
                send_all(sock, parts)
        finally:
            sock.settimeout(SOCKET_TIMEOUT)

    def _verdict(self) -> Verdict:
        auth = self.server.basic_auth
        if auth is None:
            return Verdict.ALLOWED
        # Until the password is checked the connection may be evicted like an
        # idle one: checks waiting for a hashing slot never lock out a scrape.
        self.server.guard.phase(self.connection, RESPONSE_DEADLINE, busy=False)
        return auth.check(self.headers.get("Authorization"), self._interrupt)

    def _answer(self, method: str) -> Response | None:
        """The response, or None when the connection was cut during the check."""
        refused_body = _declared_body(self.headers)
        if refused_body is not None:
            self.close_connection = True  # the body is never read: nothing may follow it
        verdict = self._verdict()
        if verdict is Verdict.CUT:
            self.close_connection = True
            return None
        self.server.guard.phase(self.connection, RESPONSE_DEADLINE, busy=True)
        if verdict is not Verdict.ALLOWED:
            return _refusal(verdict)
        if refused_body is not None:
            status, reason = refused_body.split(" ", 1)
            return text(int(status), reason + "\n")
        request = Request(
            method,
            self.path.split("?", 1)[0],
            {name.lower(): value for name, value in self.headers.items()},
        )
        try:
            return self.server.routes.handle(request)
        except Exception as exc:  # /metrics must answer even when a route has a bug
            return text(500, f"internal error: {type(exc).__name__}\n")

    def _handle(self, method: str) -> None:
        response = self._answer(method)
        if response is not None:
            self._send(response, head_only=method == "HEAD")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # closing cuts every connection; nothing to wait for
    allow_reuse_address = True
    # A burst of connections (a flood) waits in the kernel for the accept loop
    # instead of pushing a scrape into SYN retry (1 s, 3 s...); capped by
    # net.core.somaxconn. Measured: docs/performance.md.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        routes: Routes,
        web_config: WebConfig | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.routes = routes
        self.web_config = web_config
        # The password checks' shared state: caches, hashing slots, equal-work pacing.
        self.basic_auth = (
            BasicAuth(web_config.users)
            if web_config is not None and web_config.auth_required
            else None
        )
        check_open_files(max_connections)
        self.guard = ConnectionGuard(max_connections)
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
        self._watchdog = threading.Thread(target=self.guard.watch, name="http-guard", daemon=True)
        self._watchdog.start()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            sock, addr = super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.05)  # out of descriptors: do not spin on the ready listener
            raise
        sock.settimeout(SOCKET_TIMEOUT)
        if self._ssl is not None:
            # The handshake happens in the handler thread (do_handshake_on_connect
            # on first read), so a slow TLS client never blocks the accept loop.
            sock = self._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.guard.admit(request):
            super().shutdown_request(request)  # every slot is busy answering: refuse
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.guard.release(request)  # before the close: a cut never hits a reused fd
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanished mid-request is not the exporter's error

    def server_close(self) -> None:
        super().server_close()
        self.guard.close()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread
