"""HTTP transport of the simulated Lynx API (routes in :mod:`exporter.simulator.routes`,
the control API in :mod:`exporter.simulator.control`).

Stdlib only. One thread per connection (keep-alive friendly), per-request latency and
faults that sleep on an Event so :meth:`SimulatorServer.stop` can interrupt them.
Control endpoints under ``/_sim/`` let tests and the demo steer it over HTTP.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, cast
from urllib.parse import parse_qsl, urlsplit

from exporter.simulator.clock import SimClock
from exporter.simulator.context import ApiRequest, Payload
from exporter.simulator.control import control
from exporter.simulator.faults import (
    TRICKLE_PIECES,
    Fault,
    FaultKind,
    FaultSet,
    echo_authorization,
    mutate_payload,
    patch_document,
)
from exporter.simulator.fleet import Fleet
from exporter.simulator.replies import JSON_CONTENT_TYPE, Reply, bearer, json_bytes, same, sim_error
from exporter.simulator.routes import find, not_found
from exporter.simulator.vendor import TokenIssuer, vendor_error

__all__ = ["RecordedRequest", "SimulatorServer"]

_HTML_CONTENT_TYPE: Final = "text/html; charset=utf-8"
_MAX_BODY: Final = 1 << 20
_RESET_GRACE_S: Final = 0.05  # let the partial body reach the client before the RST
# The exporter's "<poll id> <attempt>/<allowed>" header (exporter.client.ATTEMPT_HEADER),
# recorded so tests can group the request log by poll. Spelled out: stdlib only here.
ATTEMPT_HEADER: Final = "X-Request-Attempt"


@dataclass(frozen=True)
class RecordedRequest:
    monotonic: float
    wall: float
    path: str
    query: dict[str, str]
    actor_id: int | None
    machine: str | None
    authorization: str | None
    status: int  # 0 = no answer (RESET, aborted hang, or still in flight)
    fault: str | None
    # Optional, left out of the /_sim/requests JSON when None:
    attempt: str | None = None  # the ATTEMPT_HEADER value the client sent
    retry_after: str | None = None  # the Retry-After value the simulator answered with


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Don't join handler threads on close: hung requests must not delay stop().
    block_on_close = False
    request_queue_size = 128  # 32+ clients connecting at once must not hit SYN retries

    def __init__(self, address: tuple[str, int], sim: SimulatorServer, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.sim = sim
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients vanishing mid-answer (timeouts, resets) are routine here.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | ValueError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LynxSimulator/1.0"
    # Buffer the whole answer into one send; with Nagle off, no 40 ms delayed-ACK stalls.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections eventually free their thread

    def version_string(self) -> str:
        return self.server_version  # no Python version banner

    @property
    def sim(self) -> SimulatorServer:
        return cast(_HTTPServer, self.server).sim

    def setup(self) -> None:
        super().setup()
        self.sim._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.sim._untrack(self.connection)

    def log_message(self, format: str, *args: object) -> None:
        pass  # per-request logging would dominate the cost of a request

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing ----------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body, or None if it cannot be read (connection then closes)."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return None
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _abort(self) -> None:
        """Close the connection with a RST (SO_LINGER 0) without answering further."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile/wfile hold references to the socket, so close() alone would not close
        # the descriptor; detach it and close the fd ourselves.
        with contextlib.suppress(OSError):
            socket.close(self.connection.detach())

    def _dispatch(self, method: str) -> None:
        arrival_mono, arrival_wall = time.monotonic(), self.sim.clock.now()
        body = self._read_body()
        split = urlsplit(self.path)
        path = split.path
        if path.startswith("/_sim/") or path == "/_sim":
            if body is None:
                self._send(sim_error(400, "unreadable request body"))
                return
            self._send(control(self.sim, method, path, body))
            return
        self._api(method, split.path, split.query, arrival_mono, arrival_wall)

    def _api(self, method: str, path: str, raw_query: str, mono: float, wall: float) -> None:
        sim = self.sim
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in query.items()}  # .NET binds case-insensitively
        matched = find(path, lowered)
        authorization = self.headers.get("Authorization")
        handle = sim._record_arrival(
            RecordedRequest(
                monotonic=mono,
                wall=wall,
                path=path,
                query=query,
                actor_id=None if matched is None else matched.actor_id,
                machine=None if matched is None else matched.machine,
                authorization=authorization,
                status=0,
                fault=None,
                attempt=self.headers.get(ATTEMPT_HEADER),
            )
        )
        if sim.latency > 0 and sim._sleep(sim.latency):
            sim._record_done(handle, 0, None)
            self._abort()
            return
        if matched is None:
            self._reply_and_record(handle, not_found(), None)
            return
        request = ApiRequest(method, lowered, authorization, wall)
        self._answer(handle, matched.answer(sim, request), authorization)

    def _answer(self, handle: tuple[int, int], outcome: Payload, authorization: str | None) -> None:
        """Send a route's verdict, applying its fault on the wire or in the document."""
        sim = self.sim
        if isinstance(outcome, Reply):
            self._reply_and_record(handle, outcome, None)
            return
        payload, fault = outcome
        if fault is None:
            self._reply_and_record(handle, Reply(200, json_bytes(payload)), None)
            return
        kind = fault.kind
        full = json_bytes(payload)
        if fault.echo_authorization:
            full = json_bytes(echo_authorization(payload, authorization or ""))
        if kind is FaultKind.HANG:
            if fault.hang_at == "start":
                sim._record_done(handle, 0, kind.value)  # visible in the log while hanging
                if sim._sleep(fault.seconds):  # stopping: never answer
                    self._abort()
                    return
                self._reply_and_record(handle, Reply(200, full), kind.value)
            else:
                sim._record_done(handle, 200, kind.value)  # the status line does go out
                self._send_slowly(full, fault)
        elif kind is FaultKind.STATUS:
            reply = _status_reply(fault, authorization)
            retry_after = dict(reply.headers).get("Retry-After")
            sim._record_done(handle, reply.status, kind.value, retry_after)
            self._send(reply)
        elif kind is FaultKind.RESET:
            sim._record_done(handle, 0, kind.value)
            self._send_partial_then_reset(full)
        elif kind is FaultKind.TRUNCATED_JSON:
            self._reply_and_record(handle, Reply(200, full[: len(full) // 2]), kind.value)
        elif kind is FaultKind.HTML_200:
            page = _HTML_PAGE
            if fault.echo_authorization:
                page += f"<!-- Authorization: {authorization} -->\n".encode()
            self._reply_and_record(handle, Reply(200, page, _HTML_CONTENT_TYPE), kind.value)
        else:
            document = (
                patch_document(payload, fault.patch, fault.records)
                if kind is FaultKind.PATCH
                else mutate_payload(kind, payload)
            )
            if fault.echo_authorization:
                document = echo_authorization(document, authorization or "")
            if fault.pad_bytes and isinstance(document, dict):
                document["Padding"] = "x" * fault.pad_bytes
            self._reply_and_record(handle, Reply(200, json_bytes(document)), kind.value)

    def _reply_and_record(self, handle: tuple[int, int], reply: Reply, fault: str | None) -> None:
        self.sim._record_done(handle, reply.status, fault)
        self._send(reply)

    def _send_slowly(self, body: bytes, fault: Fault) -> None:
        """HANG mid-answer: headers, then half the body and a pause of ``seconds``
        ("body"), or the body in pieces ``seconds`` apart ("trickle")."""
        self.send_response(200)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault.hang_at == "body":
            half = max(1, len(body) // 2)
            pieces = [body[:half], body[half:]]
        else:
            size = max(1, -(-len(body) // TRICKLE_PIECES))
            pieces = [body[i : i + size] for i in range(0, len(body), size)]
        try:
            for index, piece in enumerate(pieces):
                if index and self.sim._sleep(fault.seconds):
                    self._abort()
                    return
                self.wfile.write(piece)
                self.wfile.flush()
        except OSError:  # the client gave up (its timeout): routine
            self.close_connection = True

    def _send_partial_then_reset(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: max(1, len(body) // 2)])
        with contextlib.suppress(OSError):
            self.wfile.flush()
        self.sim._sleep(_RESET_GRACE_S)
        self._abort()


_HTML_PAGE: Final = (
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to service "
    b"your request. Please try again later.</p></body></html>\n"
)


def _log_entry(record: RecordedRequest) -> dict[str, object]:
    entry = asdict(record)
    for optional in ("attempt", "retry_after"):
        if entry[optional] is None:
            del entry[optional]
    return entry


def _retry_after_value(fault: Fault) -> str | None:
    if fault.retry_after_in is not None:
        return email.utils.formatdate(time.time() + fault.retry_after_in, usegmt=True)
    return fault.retry_after


def _status_reply(fault: Fault, authorization: str | None) -> Reply:
    """A STATUS fault's answer: the vendor's error body (as the vendor's 500s have)."""
    headers: tuple[tuple[str, str], ...] = ()
    retry_after = _retry_after_value(fault)
    if retry_after is not None:
        headers = (("Retry-After", retry_after),)
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    if fault.echo_authorization:
        phrase = f"{phrase} (Authorization: {authorization})"
    return vendor_error(fault.status, phrase, *headers)


class SimulatorServer:
    """The simulated Lynx API. Use as a context manager or call start()/stop().

    API requests are checked in this order: route (404), auth (401/403), parameters
    (400), actor/machine existence (404); only then is a fault looked up, so faults
    hit requests that would otherwise have succeeded. Every API request (not the
    /_sim/ control calls) is appended to the request log on arrival.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[int, str] | str = "sim-token",
        latency: float = 0.0,
        timestamps: str = "utc",
        page_cap: int = 50,
        strict: bool = True,
        clock: SimClock | None = None,
    ) -> None:
        self.fleet = fleet
        self.latency = latency
        # The wall clock the API answers by (request log, evDashboard's "now",
        # /status): real time unless a test sets it (POST /_sim/clock).
        self.clock = clock or SimClock()
        # /v1/machines/{id}/status: "utc" or "machine" (local at MachineTimeZoneOffset).
        self.timestamps = timestamps
        # /v1/machines answers at most this many records, whatever ResultsLimit asks.
        self.page_cap = page_cap
        self._host = host
        self._requested_port = port
        self._tokens: str | dict[int, str] = tokens if isinstance(tokens, str) else dict(tokens)
        self._faults = FaultSet(seed=fleet.spec.seed)
        # The vendor's ways (exporter.simulator.vendor): scoped tokens, and its
        # evDashboard rule (TimePeriod or both dates), on unless strict is False.
        self.issuer = TokenIssuer()
        self.strict = strict
        self.time_periods: frozenset[int] | None = None  # None: every code accepted
        self._log_lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._log_generation = 0  # bumped by clear_requests so late updates are dropped
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        httpd = _HTTPServer((self._host, self._requested_port), self, ipv6=":" in self._host)
        self._httpd = httpd
        self._bound_port = int(httpd.server_address[1])
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"lynx-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        # The socket already listens (connections queue in the backlog); this only
        # makes sure the accept loop is running before we return.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self._connect_host(), self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.01)

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()  # wakes latency and HANG sleeps, which then abort
        httpd.shutdown()
        httpd.server_close()
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:  # idle keep-alive readers get EOF and exit
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=1.0)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port once started (kept after stop), else the requested one."""
        return self._bound_port or self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def _connect_host(self) -> str:
        # A wildcard bind is reachable via loopback.
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._host, self._host)

    # -- tokens ------------------------------------------------------------------------

    def set_tokens(self, tokens: Mapping[int, str] | str) -> None:
        """Rotate the accepted tokens (e.g. a token revoked in the back office)."""
        self._tokens = tokens if isinstance(tokens, str) else dict(tokens)

    def authorize(self, authorization: str | None, actor_id: int | None) -> int:
        """0 if allowed, else 401 (no/unknown token) or 403 (token of another actor)."""
        token = bearer(authorization)
        if token is None:
            return 401
        issued = self.issuer.check(token, actor_id)  # an exchanged access token
        if issued is not None:
            return issued
        tokens = self._tokens  # one read: set_tokens may swap it meanwhile
        if isinstance(tokens, str):
            return 0 if same(token, tokens) else 401
        valid_for = {actor for actor, t in tokens.items() if same(token, t)}
        if not valid_for:
            return 401
        # A malformed ActorID with a genuine token falls through to the 400.
        return 0 if actor_id is None or actor_id in valid_for else 403

    # -- faults ------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[Fault]:
        """Active faults (``remaining`` = live countdown)."""
        return self._faults.active()

    def take_fault(
        self, actor_id: int, machine_keys: frozenset[str], endpoint: str
    ) -> Fault | None:
        """The fault a request meets (the routes ask once it would have succeeded)."""
        return self._faults.take(actor_id, machine_keys, endpoint)

    # -- request log -------------------------------------------------------------------

    def requests(self) -> list[RecordedRequest]:
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()
            self._log_generation += 1

    def request_log(self) -> list[dict[str, object]]:
        """The request log as ``GET /_sim/requests`` shows it."""
        return [_log_entry(r) for r in self.requests()]

    def _record_arrival(self, record: RecordedRequest) -> tuple[int, int]:
        # Logged at arrival (status 0) so the log keeps arrival order even when
        # answers overtake each other; _record_done fills in the outcome.
        with self._log_lock:
            self._log.append(record)
            return self._log_generation, len(self._log) - 1

    def _record_done(
        self,
        handle: tuple[int, int],
        status: int,
        fault: str | None,
        retry_after: str | None = None,
    ) -> None:
        generation, index = handle
        with self._log_lock:
            if generation == self._log_generation:
                self._log[index] = replace(
                    self._log[index], status=status, fault=fault, retry_after=retry_after
                )

    # -- internals used by the handler -------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if the server is stopping (caller aborts)."""
        return self._stopping.wait(seconds)
