"""Hostile HTTP clients against a real exporter process, over real sockets.

Issue 11, the HTTP server: bodies announced but never sent (or sent forever),
request heads of megabytes, headers trickled a byte at a time, a flood of idle
connections past the open-files limit, cross-site reloads, a request hidden in
another's body, ``gzip;q=0``. Memory is read from ``/proc/<pid>/status``.
Every test is bounded: sockets have timeouts, bodies and floods a fixed size.
"""

from __future__ import annotations

import base64
import os
import re
import resource
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import cast

import bcrypt
import pytest
import requests
import yaml

from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from exporter.web import server
from exporter.web.routes import Request, Response, Routes
from exporter.web.server import REQUEST_DEADLINE
from tests.harness import ExporterProcess, simulator_config, wait_for, write_config

MB = 1024 * 1024
GROWTH_LIMIT = 30 * MB  # "no single client can grow the process by more than a few tens of MB"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Fleet(FleetSpec(seed=5, actors=1, machines_per_actor=2))) as server:
        yield server


class AuthExporter(ExporterProcess):
    """Probes /-/healthy with the basic-auth credentials of the test's web config."""

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError("exporter exited:\n" + "\n".join(self.log_lines))
        try:
            answer = requests.get(f"{self.url}/-/healthy", auth=AUTH, timeout=1)
        except requests.RequestException:
            return False
        return answer.status_code == 200


AUTH = ("prometheus", "secret")


@contextmanager
def exporter_running(
    tmp_path: Path, sim: SimulatorServer, *args: str, web: Mapping[str, object] | None = None
) -> Iterator[ExporterProcess]:
    config = write_config(
        tmp_path / "config.yaml",
        simulator_config(sim.url, [{"id": sim.fleet.actor_ids()[0]}], token="sim-token"),
    )
    extra = list(args)
    if web is not None:
        web_file = tmp_path / "web.yml"
        web_file.write_text(yaml.safe_dump(dict(web)), encoding="utf-8")
        extra.append(f"--web.config.file={web_file}")
    kind = ExporterProcess if web is None else AuthExporter
    exporter = kind(args=[f"--config.file={config}", "--log.level=debug", *extra])
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()


def rss(exporter: ExporterProcess) -> int:
    """Resident memory of the exporter process, bytes, from /proc/<pid>/status."""
    assert exporter.process is not None
    for line in Path(f"/proc/{exporter.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(exporter: ExporterProcess) -> float:
    assert exporter.process is not None
    fields = Path(f"/proc/{exporter.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(exporter: ExporterProcess, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", exporter.port), timeout=timeout)


def read_until_closed(sock: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes (or ``limit`` seconds pass:
    then an AssertionError, the server kept the connection open)."""
    deadline = time.monotonic() + limit
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {limit}s; got {data[:200]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def statuses(data: bytes) -> list[int]:
    """The status codes of every response in a byte stream (a status line may
    follow a body that ends in a bare newline)."""
    return [int(code) for code in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ", data)]


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send, ignoring a server that already answered and closed."""
    with suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
        sock.sendall(data)


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


# --- item 3: bodies ------------------------------------------------------------------


def test_a_negative_content_length_is_refused_before_any_body_is_read(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    with exporter_running(tmp_path, sim, "--web.enable-lifecycle") as exporter:
        before = rss(exporter)
        with connect(exporter) as sock:
            sock.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
            # A body that would never end: 64 MB, then the server must have answered.
            block = b"x" * MB
            for _ in range(64):
                send_quietly(sock, block)
            answer = read_until_closed(sock, limit=5)
        assert statuses(answer) == [400], answer[:300]
        assert rss(exporter) - before < GROWTH_LIMIT
        assert not any(e.get("event") == "config reloaded" for e in exporter.logs())


@pytest.mark.parametrize("length", ["1000000000000", "65537", "1"])
def test_a_reload_with_a_body_is_refused_and_the_body_never_read(
    tmp_path: Path, sim: SimulatorServer, length: str
) -> None:
    with exporter_running(tmp_path, sim, "--web.enable-lifecycle") as exporter:
        with connect(exporter) as sock:
            started = time.monotonic()
            sock.sendall(
                f"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()
            )
            answer = read_until_closed(sock, limit=3)  # no body sent: answered at once
        assert statuses(answer) == [413], answer[:300]
        assert time.monotonic() - started < 3
        assert b"Connection: close" in answer


def test_auth_is_decided_from_the_headers_before_any_body(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    web = {"basic_auth_users": {"prometheus": bcrypt_hash("secret")}}
    with exporter_running(tmp_path, sim, "--web.enable-lifecycle", web=web) as exporter:
        for request in (
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        ):
            with connect(exporter) as sock:
                sock.sendall(request)
                answer = read_until_closed(sock, limit=3)
            assert statuses(answer) == [401], (request, answer[:300])
        credentials = base64.b64encode(b"prometheus:secret").decode()
        with connect(exporter) as sock:
            sock.sendall(
                b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                + f"Authorization: Basic {credentials}\r\n\r\n".encode()
            )
            assert statuses(read_until_closed(sock, limit=3)) == [413]


def test_a_request_hidden_in_a_body_is_never_served(tmp_path: Path, sim: SimulatorServer) -> None:
    hidden = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    carriers = [
        # A body on a GET: read as the next request if left unread.
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(hidden) + hidden,
        # A chunked body whose framing the server does not read.
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + hidden,
        # A body longer than a drain would read.
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (70000 + len(hidden))
        + b"x" * 70000
        + hidden,
    ]
    with exporter_running(tmp_path, sim, "--web.enable-lifecycle") as exporter:
        for carrier in carriers:
            with connect(exporter) as sock:
                send_quietly(sock, carrier)
                answer = read_until_closed(sock, limit=3)
            assert len(statuses(answer)) == 1, (carrier[:60], answer[:400])
            assert statuses(answer)[0] in (400, 413), answer[:300]
        assert not any(e.get("event") == "config reloaded" for e in exporter.logs())
        # Requests without bodies, pipelined on one connection, are each answered.
        with connect(exporter) as sock:
            sock.sendall(
                b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert statuses(read_until_closed(sock, limit=3)) == [200, 404]


SMUGGLED = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
# Header lines RFC 9112 section 5 forbids. Python's parser ends the headers at each
# (folded: joins it to the line before), so the framing header in it was ignored and
# the body behind it answered as a second request.
MALFORMED_LINES = [
    b"Content-Length : %d" % len(SMUGGLED),  # whitespace before the colon
    b"Transfer-Encoding\t: chunked",
    b"X-Folded: a\r\n Content-Length: %d" % len(SMUGGLED),  # obsolete line folding
    b"Content-Length%d" % len(SMUGGLED),  # no colon
    b"X-Note: a\rContent-Length: %d" % len(SMUGGLED),  # a bare CR
]


@pytest.mark.parametrize("line", MALFORMED_LINES)
def test_a_malformed_header_line_is_refused_and_the_connection_closed(
    tmp_path: Path, sim: SimulatorServer, line: bytes
) -> None:
    web = {"basic_auth_users": {"prometheus": bcrypt_hash("secret")}}
    credentials = b"Authorization: Basic " + base64.b64encode(b"prometheus:secret") + b"\r\n"
    with exporter_running(tmp_path, sim, web=web) as exporter:
        # With credentials, and without: a head that cannot be read reliably gets
        # 400 before authentication, as a malformed request line does.
        for authorization in (credentials, b""):
            with connect(exporter) as sock:
                head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + authorization + line
                send_quietly(sock, head + b"\r\n\r\n" + SMUGGLED)
                answer = read_until_closed(sock, limit=3)
            assert statuses(answer) == [400], (line, answer[:300])
            assert b"Connection: close" in answer


def test_a_request_head_is_bounded(tmp_path: Path, sim: SimulatorServer) -> None:
    """90 headers of 60 KB each pass the standard library's per-line and
    per-count limits (5.4 MB a request); 20 clients sending one would hold 100 MB."""
    header = b"X-Pad: " + b"a" * 60000 + b"\r\n"
    with exporter_running(tmp_path, sim) as exporter, ExitStack() as stack:
        before = rss(exporter)
        socks = [stack.enter_context(connect(exporter)) for _ in range(20)]
        for sock in socks:
            send_quietly(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + header * 90)
        answers = [read_until_closed(sock, limit=5) for sock in socks]
        assert rss(exporter) - before < GROWTH_LIMIT
        for answer in answers:
            assert statuses(answer) == [431], answer[:300]
        assert requests.get(f"{exporter.url}/metrics", timeout=5).status_code == 200


# --- item 4: connections and deadlines ----------------------------------------------------


def test_headers_trickled_a_byte_at_a_time_are_cut_off(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    with exporter_running(tmp_path, sim) as exporter, connect(exporter) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        limit = REQUEST_DEADLINE + 3
        closed = False
        while time.monotonic() - started < limit:
            try:
                sock.sendall(b"X")  # one byte of a header line that never ends
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.5)
            try:
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
                break
        assert closed, "a trickling client kept its connection past the request deadline"
        assert REQUEST_DEADLINE - 1 < time.monotonic() - started < limit


class _BigBody:
    """Routes stand-in: every path answers a body far larger than any socket buffer."""

    body = b"x" * (16 * MB)

    def handle(self, request: Request) -> Response:
        return Response(200, self.body, {"Content-Type": "text/plain"})


def test_a_client_that_stops_reading_is_cut_at_the_response_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The body is written with the socket in blocking mode (one GIL hand-off for
    megabytes); the watchdog's cut must still end a write to a client that stopped
    reading, and other scrapes must go on meanwhile."""
    monkeypatch.setattr(server, "RESPONSE_DEADLINE", 1.0)
    httpd = server.ExporterHTTPServer(("127.0.0.1", 0), cast(Routes, _BigBody()))
    httpd.serve_in_thread()
    try:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", httpd.port))
        with stalled:
            stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(
                lambda: httpd.guard.expired == 1, 5.0, what="the stalled response was never cut"
            )
            with requests.get(f"http://127.0.0.1:{httpd.port}/metrics", timeout=10) as other:
                assert other.status_code == 200 and len(other.content) == len(_BigBody.body)
            # Cut means the writer stopped: what is left to read ends long before the body.
            stalled.settimeout(5.0)
            received = 0
            with suppress(ConnectionResetError):
                while chunk := stalled.recv(1 << 20):
                    received += len(chunk)
            assert received < len(_BigBody.body) // 2
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Trickle:
    """A socket whose every sendmsg takes at most ``most`` bytes (as a send cut
    short by a signal would); records what was sent and how."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.sent = bytearray()
        self.calls = 0

    def sendmsg(self, buffers: list[memoryview]) -> int:
        self.calls += 1
        data = b"".join(bytes(buffer) for buffer in buffers)[: self.most]
        self.sent += data
        return len(data)


@pytest.mark.parametrize("most", [1, 3, 7, 1 << 20])
def test_send_all_sends_every_byte_in_order_however_the_kernel_cuts_it(most: int) -> None:
    parts = (b"HTTP/1.1 200 OK\r\n\r\n", b"", b"x" * 50, b"tail")
    trickle = _Trickle(most)
    server.send_all(cast(socket.socket, trickle), parts)
    assert bytes(trickle.sent) == b"".join(parts)
    assert trickle.calls == -(-len(b"".join(parts)) // most)  # no empty or wasted call


def test_send_all_writes_more_parts_than_one_sendmsg_takes() -> None:
    """/metrics is sent as its rendered segments, thousands at 10,000 machines: more
    than the kernel takes in one I/O vector (IOV_MAX, 1024 on Linux, else EMSGSIZE)."""
    parts = [b"%05d," % index for index in range(3 * server.IOV_MAX + 7)]
    sender, receiver = socket.socketpair()
    with sender, receiver:
        server.send_all(sender, parts)
        sender.shutdown(socket.SHUT_WR)
        received = bytearray()
        while chunk := receiver.recv(1 << 16):
            received += chunk
    assert bytes(received) == b"".join(parts)


def test_tls_writes_join_small_parts_and_keep_large_ones_whole() -> None:
    """TLS has no scatter-gather write: the segments go out joined in pieces of
    about TLS_WRITE_BYTES, one sendall each, never as one copy of the body."""
    parts = [b"a" * 300, b"", b"b" * 500, b"c" * 5000, b"d" * 10, b"e" * 90]
    pieces = list(server.coalesced(parts, size=1000))
    assert b"".join(pieces) == b"".join(parts)
    assert [len(piece) for piece in pieces] == [800, 5000, 100]


def accept_queue(port: int) -> int:
    """Connections the kernel holds for the listener on ``port`` that the
    exporter has not accepted yet (rx_queue of a LISTEN row in /proc/net/tcp*)."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


@contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """Children started inside inherit ``soft`` as their open-files limit."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


def test_metrics_answer_under_a_flood_of_idle_connections(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    flood = 1100  # past the usual 1024 open-files limit the exporter runs with
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= flood + 200, "the test itself needs descriptors for the flood"
    with open_files_limit(1024):
        context = exporter_running(tmp_path, sim)
        exporter = context.__enter__()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, flood + 500), hard))
        wait_for(exporter.ready, timeout=20, what="ready")
        before_rss, before_cpu = rss(exporter), cpu_seconds(exporter)
        with ExitStack() as stack:
            for _ in range(flood):
                sock = stack.enter_context(socket.socket())
                sock.settimeout(5)
                sock.connect(("127.0.0.1", exporter.port))
            # Answered even while the kernel still holds part of the flood for
            # the accept loop; then, the flood accepted, answered at full speed.
            assert requests.get(f"{exporter.url}/metrics", timeout=5).status_code == 200
            wait_for(lambda: accept_queue(exporter.port) == 0, timeout=10, what="flood accepted")
            session = requests.Session()
            for _ in range(10):
                started = time.monotonic()
                response = session.get(f"{exporter.url}/metrics", timeout=2)
                assert response.status_code == 200
                assert "nayax_ev_build_info" in response.text
                assert time.monotonic() - started < 2
            idle_cpu = cpu_seconds(exporter)
            time.sleep(2)  # the flood still open: the exporter must not spin
            assert cpu_seconds(exporter) - idle_cpu < 0.5
            assert rss(exporter) - before_rss < GROWTH_LIMIT
        assert cpu_seconds(exporter) - before_cpu < 10
    finally:
        context.__exit__(None, None, None)


def test_the_connection_cap_closes_the_longest_idle_first(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    with (
        exporter_running(tmp_path, sim, "--web.max-connections=3") as exporter,
        ExitStack() as stack,
    ):
        idle = []
        for _ in range(3):
            idle.append(stack.enter_context(connect(exporter)))
            time.sleep(0.05)  # a definite order of arrival
        time.sleep(0.2)
        # A scrape over the cap makes room by closing the oldest idle connection.
        response = requests.get(f"{exporter.url}/metrics", timeout=3)
        assert response.status_code == 200
        idle[0].settimeout(2)
        assert idle[0].recv(10) == b"", "the oldest idle connection was kept"
        # The newer ones still work.
        idle[2].sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(read_until_closed(idle[2], limit=3)) == [200]


def test_password_checks_under_way_do_not_lock_a_scrape_out(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    """Issue 19: the cap full of connections whose wrong passwords are being
    checked (or wait for a hashing slot). A scrape with verified credentials
    evicts the one waiting longest instead of being refused."""
    slow = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=13)).decode()  # ~0.6 s a check
    web = {"basic_auth_users": {AUTH[0]: bcrypt_hash(AUTH[1]), "alice": slow}}
    with (
        exporter_running(tmp_path, sim, "--web.max-connections=3", web=web) as exporter,
        ExitStack() as stack,
    ):
        cpu = cpu_seconds(exporter)  # the start-up probe verified AUTH: no hash needed
        checks = [stack.enter_context(connect(exporter, timeout=10)) for _ in range(3)]
        for index, sock in enumerate(checks):
            credentials = base64.b64encode(b"alice:wrong %d" % index)
            sock.sendall(
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Basic " + credentials + b"\r\n\r\n"
            )
        wait_for(lambda: cpu_seconds(exporter) - cpu > 0.2, timeout=10, what="a check hashing")
        response = requests.get(f"{exporter.url}/metrics", auth=AUTH, timeout=5)
        assert response.status_code == 200
        answers = sorted(statuses(read_until_closed(sock, limit=10)) for sock in checks)
        assert answers == [[], [401], [401]]  # the evicted check is closed unanswered


def test_the_guard_wakes_the_handler_of_a_connection_it_cuts() -> None:
    now = [0.0]
    guard = server.ConnectionGuard(1, clock=lambda: now[0])
    with ExitStack() as stack:
        first, first_peer, second, _ = (
            stack.enter_context(sock) for sock in (*socket.socketpair(), *socket.socketpair())
        )
        woken: list[str] = []
        assert guard.admit(first)
        guard.on_cut(first, lambda: woken.append("evicted"))
        assert guard.admit(second)  # over the cap: the first, waiting, makes room
        assert first_peer.recv(1) == b""
        guard.on_cut(first, lambda: woken.append("already cut"))  # called at once
        guard.on_cut(second, lambda: woken.append("expired"))
        now[0] += REQUEST_DEADLINE
        guard.expire()
        assert woken == ["evicted", "already cut", "expired"]


def test_a_connection_cap_past_the_open_files_limit_is_refused(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    config = write_config(
        tmp_path / "c.yaml", simulator_config(sim.url, [{"id": sim.fleet.actor_ids()[0]}])
    )
    process = ExporterProcess(args=[f"--config.file={config}", "--web.max-connections=1000"])
    with open_files_limit(1024):
        process.start(wait_healthy=False)
    assert process.process is not None
    assert process.process.wait(timeout=20) == 1
    process.stop()
    assert any("ulimit -n" in line and "1024" in line for line in process.log_lines)


def test_max_connections_must_be_positive(tmp_path: Path, sim: SimulatorServer) -> None:
    config = write_config(
        tmp_path / "c.yaml", simulator_config(sim.url, [{"id": sim.fleet.actor_ids()[0]}])
    )
    process = ExporterProcess(args=[f"--config.file={config}", "--web.max-connections=0"])
    process.start(wait_healthy=False)
    assert process.process is not None
    assert process.process.wait(timeout=20) == 2
    process.stop()
    assert any("--web.max-connections must be at least 1" in line for line in process.log_lines)


# --- item 5: the reload endpoint ----------------------------------------------------------


def reloads(exporter: ExporterProcess) -> int:
    return sum(e.get("event") == "config reloaded" for e in exporter.logs())


def test_reload_over_http_is_off_by_default_and_sighup_still_works(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    with exporter_running(tmp_path, sim) as exporter:
        answer = requests.post(f"{exporter.url}/-/reload", timeout=5)
        assert answer.status_code == 403
        assert "--web.enable-lifecycle" in answer.text and "SIGHUP" in answer.text
        assert reloads(exporter) == 0
        exporter.signal(signal.SIGHUP)
        wait_for(lambda: reloads(exporter) == 1, timeout=10, what="SIGHUP reload")


def test_reload_refuses_what_a_browser_on_another_site_can_send(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    with exporter_running(tmp_path, sim, "--web.enable-lifecycle") as exporter:
        url = f"{exporter.url}/-/reload"
        host = f"127.0.0.1:{exporter.port}"
        refused = [
            ({"Origin": "http://evil.example"}, 403),
            ({"Origin": "null"}, 403),
            ({"Origin": f"http://{host}.evil.example"}, 403),
            ({"Sec-Fetch-Site": "cross-site"}, 403),
            ({"Sec-Fetch-Site": "same-site"}, 403),
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
            ({"Content-Type": "text/plain;charset=UTF-8"}, 415),
        ]
        for headers, status in refused:
            answer = requests.post(url, headers=headers, timeout=5)
            assert answer.status_code == status, (headers, answer.text)
        assert reloads(exporter) == 0
        allowed = [
            {},  # curl -X POST, requests.post
            {"Origin": f"http://{host}"},  # the exporter's own page
            {"Sec-Fetch-Site": "same-origin"},
            {"Content-Type": "application/json"},  # needs a CORS preflight, never granted
        ]
        for headers in allowed:
            answer = requests.post(url, headers=headers, timeout=5)
            assert answer.status_code == 200, (headers, answer.text)
        wait_for(lambda: reloads(exporter) == len(allowed), timeout=5, what="reloads")
        preflight = requests.options(url, headers={"Origin": "http://evil.example"}, timeout=5)
        assert "Access-Control-Allow-Origin" not in preflight.headers
        assert preflight.status_code >= 400


# --- item 6: gzip ------------------------------------------------------------------------


GZIP_CASES = [
    ("gzip;q=0", False),
    ("gzip; q=0.0, identity", False),
    ("identity, gzip;q=0.000", False),
    ("GZIP", True),  # coding names are case-insensitive
    ("gzip;q=0.5", True),
    ("deflate, gzip", True),
    ("identity", False),
]


def test_gzip_only_when_accepted(tmp_path: Path, sim: SimulatorServer) -> None:
    with exporter_running(tmp_path, sim) as exporter:
        for accept_encoding, zipped in GZIP_CASES:
            response = requests.get(
                f"{exporter.url}/metrics",
                headers={"Accept-Encoding": accept_encoding},
                timeout=5,
                stream=True,
            )
            raw = response.raw.read()
            assert (response.headers.get("Content-Encoding") == "gzip") is zipped, accept_encoding
            assert raw.startswith(b"\x1f\x8b") is zipped, accept_encoding
