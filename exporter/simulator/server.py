"""HTTP server that imitates Lynx ``GET /v1/actors/{ActorID}/evDashboard``.

Stdlib only. One thread per connection (keep-alive friendly), per-request latency and
faults that sleep on an Event so :meth:`SimulatorServer.stop` can interrupt them.
Control endpoints under ``/_sim/`` let tests and the demo steer it over HTTP.
"""

from __future__ import annotations

import contextlib
import email.utils
import hmac
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from exporter.simulator.faults import (
    TRICKLE_PIECES,
    Fault,
    FaultKind,
    FaultSet,
    echo_authorization,
    mutate_payload,
)
from exporter.simulator.fleet import Fleet, Machine, resolve_window

__all__ = ["RecordedRequest", "SimulatorServer"]

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"
_TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
_HTML_CONTENT_TYPE: Final = "text/html; charset=utf-8"
# Optional "/operational" prefix so the production-style base_url also works.
_API_PATH: Final = re.compile(r"^(?:/operational)?/v1/actors/([^/]*)/evdashboard/?$", re.I)
_INT_RE: Final = re.compile(r"^[+-]?[0-9]+$")
_INT64: Final = (-(2**63), 2**63 - 1)
_INT32: Final = (-(2**31), 2**31 - 1)
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


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


class _BadRequest(Exception):
    pass


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


def _error(status: int, message: str, *headers: tuple[str, str]) -> _Reply:
    return _Reply(status, _json_bytes({"error": message}), headers=headers)


def _parse_int(text: str, bounds: tuple[int, int], name: str) -> int:
    # int() alone would accept "1_000" and surrounding spaces; .NET binding would not.
    if not _INT_RE.match(text):
        raise _BadRequest(f"{name} must be an integer")
    value = int(text)
    if not bounds[0] <= value <= bounds[1]:
        raise _BadRequest(f"{name} is out of range")
    return value


def _parse_datetime(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)  # 3.11: accepts Z, offsets, fractions
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _BadRequest(f"{name} is not an ISO 8601 date-time") from None


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


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

    def _send(self, reply: _Reply) -> None:
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
        arrival_mono, arrival_wall = time.monotonic(), time.time()
        body = self._read_body()
        split = urlsplit(self.path)
        path = split.path
        if path.startswith("/_sim/") or path == "/_sim":
            if body is None:
                self._send(_error(400, "unreadable request body"))
                return
            self._send(self.sim._control(method, path, body))
            return
        self._api(method, split.path, split.query, arrival_mono, arrival_wall)

    def _api(self, method: str, path: str, raw_query: str, mono: float, wall: float) -> None:
        sim = self.sim
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in query.items()}  # .NET binds case-insensitively
        match = _API_PATH.match(path)
        actor_id: int | None = None
        if match is not None:
            try:
                actor_id = _parse_int(unquote(match.group(1)), _INT64, "ActorID")
            except _BadRequest:
                actor_id = None
        machine_raw = lowered.get("machineid") or lowered.get("machinenumber") or None
        authorization = self.headers.get("Authorization")
        handle = sim._record_arrival(
            RecordedRequest(
                monotonic=mono,
                wall=wall,
                path=path,
                query=query,
                actor_id=actor_id,
                machine=machine_raw,
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

        outcome = sim._decide(
            method,
            match=match,
            actor_id=actor_id,
            query=lowered,
            authorization=authorization,
            wall=wall,
        )
        if isinstance(outcome, _Reply):
            self._reply_and_record(handle, outcome, None)
            return
        payload, fault = outcome
        if fault is None:
            self._reply_and_record(handle, _Reply(200, _json_bytes(payload)), None)
            return
        kind = fault.kind
        full = _json_bytes(payload)
        if fault.echo_authorization:
            full = _json_bytes(echo_authorization(payload, authorization or ""))
        if kind is FaultKind.HANG:
            if fault.hang_at == "start":
                sim._record_done(handle, 0, kind.value)  # visible in the log while hanging
                if sim._sleep(fault.seconds):  # stopping: never answer
                    self._abort()
                    return
                self._reply_and_record(handle, _Reply(200, full), kind.value)
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
            self._reply_and_record(handle, _Reply(200, full[: len(full) // 2]), kind.value)
        elif kind is FaultKind.HTML_200:
            page = _HTML_PAGE
            if fault.echo_authorization:
                page += f"<!-- Authorization: {authorization} -->\n".encode()
            self._reply_and_record(handle, _Reply(200, page, _HTML_CONTENT_TYPE), kind.value)
        else:
            document = mutate_payload(kind, payload)
            if fault.echo_authorization:
                document = echo_authorization(document, authorization or "")
            if fault.pad_bytes and isinstance(document, dict):
                document["Padding"] = "x" * fault.pad_bytes
            self._reply_and_record(handle, _Reply(200, _json_bytes(document)), kind.value)

    def _reply_and_record(self, handle: tuple[int, int], reply: _Reply, fault: str | None) -> None:
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


def _status_reply(fault: Fault, authorization: str | None) -> _Reply:
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
    if fault.status in (502, 503, 504):
        # Gateways in front of real APIs answer these with plain text, not JSON.
        body = f"{fault.status} {phrase}\n".encode()
        return _Reply(fault.status, body, _TEXT_CONTENT_TYPE, headers)
    return _error(fault.status, phrase, *headers)


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
    ) -> None:
        self.fleet = fleet
        self.latency = latency
        self._host = host
        self._requested_port = port
        self._tokens: str | dict[int, str] = tokens if isinstance(tokens, str) else dict(tokens)
        self._faults = FaultSet(seed=fleet.spec.seed)
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

    def set_tokens(self, tokens: Mapping[int, str] | str) -> None:
        """Rotate the accepted tokens (e.g. a token revoked in the back office)."""
        self._tokens = tokens if isinstance(tokens, str) else dict(tokens)

    # -- faults ------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[Fault]:
        """Active faults (``remaining`` = live countdown)."""
        return self._faults.active()

    # -- request log -------------------------------------------------------------------

    def requests(self) -> list[RecordedRequest]:
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()
            self._log_generation += 1

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

    def _authorize(self, authorization: str | None, actor_id: int | None) -> int:
        """0 if allowed, else 401 (no/unknown token) or 403 (token of another actor)."""
        token = _bearer(authorization)
        if token is None:
            return 401
        tokens = self._tokens  # one read: set_tokens may swap it meanwhile
        if isinstance(tokens, str):
            return 0 if _same(token, tokens) else 401
        valid_for = {actor for actor, t in tokens.items() if _same(token, t)}
        if not valid_for:
            return 401
        # A malformed ActorID with a genuine token falls through to the 400.
        return 0 if actor_id is None or actor_id in valid_for else 403

    def _decide(
        self,
        method: str,
        *,
        match: re.Match[str] | None,
        actor_id: int | None,
        query: Mapping[str, str],
        authorization: str | None,
        wall: float,
    ) -> _Reply | tuple[dict[str, object], Fault | None]:
        """Validate an API request: an error reply, or the payload plus the fault to apply.

        Order: route, auth (401/403 before any 400/404), parameters, existence, faults.
        Faults only hit requests that would otherwise succeed.
        """
        if match is None:
            return _error(404, "not found")
        if method != "GET":
            return _error(405, "method not allowed", ("Allow", "GET"))
        denied = self._authorize(authorization, actor_id)
        if denied == 401:
            return _error(401, "missing or invalid bearer token", ("WWW-Authenticate", "Bearer"))
        if denied == 403:
            return _error(403, "token is not valid for this actor")
        if actor_id is None:
            return _error(400, "ActorID must be an int64")
        now = datetime.fromtimestamp(wall, UTC)
        try:
            raw_start = query.get("startdate") or None
            raw_end = query.get("enddate") or None
            start = None if raw_start is None else _parse_datetime(raw_start, "StartDate")
            end = None if raw_end is None else _parse_datetime(raw_end, "EndDate")
            raw_id = query.get("machineid") or None
            number = query.get("machinenumber") or None
            machine_id = None if raw_id is None else _parse_int(raw_id, _INT64, "MachineID")
            if raw_id is not None and number is not None:
                raise _BadRequest("give MachineID or MachineNumber, not both")
            raw_period = query.get("timeperiod") or None
            period = None if raw_period is None else _parse_int(raw_period, _INT32, "TimePeriod")
            if start is not None and end is not None and start > end:
                raise _BadRequest("StartDate is after EndDate")
            start, end = resolve_window(start, end, period, now)
            if start > end:  # only one date given and it lies after the defaulted other
                raise _BadRequest("StartDate is after EndDate")
        except _BadRequest as exc:
            return _error(400, str(exc))
        if actor_id not in self.fleet.actor_ids():
            return _error(404, f"actor {actor_id} not found")
        machine: Machine | None = None
        if machine_id is not None or number is not None:
            machine = self.fleet.find_machine(actor_id, machine_id, number)
            if machine is None:
                return _error(404, "machine not found for this actor")
        payload = self.fleet.dashboard(
            actor_id, start=start, end=end, machine=machine, time_period=period, now=now
        )
        keys = frozenset() if machine is None else frozenset((str(machine.id), machine.number))
        return payload, self._faults.take(actor_id, keys)

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        """The /_sim/ control API (not authenticated, not recorded)."""
        try:
            doc: object = json.loads(body) if body.strip() else None
        except ValueError:
            return _error(400, "body is not JSON")
        route = (method, path.rstrip("/"))
        try:
            if route == ("POST", "/_sim/faults"):
                fault = Fault.from_json(doc)
                self.add_fault(fault)
                return _Reply(201, _json_bytes(fault.to_json()))
            if route == ("GET", "/_sim/faults"):
                return _Reply(200, _json_bytes([f.to_json() for f in self.faults()]))
            if route == ("DELETE", "/_sim/faults"):
                self.clear_faults()
                return _Reply(200, _json_bytes({"ok": True}))
            if route == ("POST", "/_sim/silence"):
                if not isinstance(doc, dict):
                    raise ValueError("body must be an object")
                actor, count = doc.get("actor_id"), doc.get("count")
                if not isinstance(actor, int) or not isinstance(count, int):
                    raise ValueError("actor_id and count must be integers")
                try:
                    self.fleet.silence(actor, count)
                except KeyError:
                    return _error(404, f"actor {actor} not found")
                return _Reply(200, _json_bytes({"ok": True}))
            if route == ("DELETE", "/_sim/silence"):
                self.fleet.unsilence()
                return _Reply(200, _json_bytes({"ok": True}))
            if route == ("GET", "/_sim/requests"):
                return _Reply(200, _json_bytes([_log_entry(r) for r in self.requests()]))
            if route == ("DELETE", "/_sim/requests"):
                self.clear_requests()
                return _Reply(200, _json_bytes({"ok": True}))
            if route == ("POST", "/_sim/latency"):
                seconds = doc.get("seconds") if isinstance(doc, dict) else None
                if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                    raise ValueError("seconds must be a number")
                if not seconds >= 0:
                    raise ValueError("seconds must be >= 0")
                self.latency = float(seconds)
                return _Reply(200, _json_bytes({"ok": True, "seconds": self.latency}))
            if route == ("GET", "/_sim/fleet"):
                return _Reply(200, _json_bytes(self._fleet_doc()))
        except ValueError as exc:
            return _error(400, str(exc))
        return _error(404, "not found")

    def _fleet_doc(self) -> dict[str, object]:
        return {
            "actors": [
                {
                    "id": actor,
                    "machines": [
                        {"id": m.id, "number": m.number, "name": m.name}
                        for m in self.fleet.machines(actor)
                    ],
                }
                for actor in self.fleet.actor_ids()
            ]
        }
