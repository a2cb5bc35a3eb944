"""``python -m bench.client_cpu``: CPU per request of the Lynx HTTP client (issue 22).

A loopback server in another process answers every request with the same
evDashboard JSON (keep-alive; plain, or gzip under ``/gzip/``). This process
sends N requests through each layer and measures its own CPU time
(``time.process_time``: other load on the machine barely moves it):

- ``client``: ``LynxClient.get_json`` (URL building, pacing, transport, JSON decode,
  the token-scrub check, the vendor-failure check);
- ``transport``: ``Transport.exchange`` alone (the bounded exchange, body bytes);
- ``urllib3``: ``HTTPConnectionPool.urlopen`` (what requests uses beneath it);
- ``http.client``: ``HTTPConnection`` directly (gzip inflated with ``zlib``);
- ``nothing``: no request, the measuring loop's own cost.

All four send the same headers and read the whole (decompressed) body.
``--callgrind`` also counts instructions under ``valgrind --tool=callgrind``: each
case runs twice with different request counts, and the difference divided by the
difference in requests is the count per request (start-up and imports cancel out).
``--profile CASE`` prints a cProfile of one case instead.

Results: ``bench/results/client-cpu-<UTC timestamp>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import http.client
import importlib.metadata
import json
import os
import platform
import pstats
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import urllib3

from exporter.config import LynxConfig, Secret
from exporter.lynx.client import LynxClient
from exporter.lynx.ratelimit import RateLimiter, TokenGate
from exporter.lynx.transport import Transport

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
LAYERS = ("client", "transport", "urllib3", "http.client", "nothing")
# A realistic access token's length (a JWT); the scrub check scans the body for it.
TOKEN = Secret("eyJ" + "x" * 400)
PATH = "/v1/actors/42/evDashboard"
PARAMS = {
    "StartDate": "2026-11-29T18:00:00.000Z",
    "EndDate": "2026-11-30T18:00:00.000Z",
    "MachineID": "987654321",
}
# What LynxClient sends (see exporter/lynx/client.py); the lower layers send the same.
HEADERS = {
    "User-Agent": "nayax-ev-exporter/bench",
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "Authorization": f"Bearer {TOKEN.reveal()}",
    "X-Request-Attempt": "0123456789abcdef 1/4",
}
DASHBOARD = {
    "OperatorDashboard": {
        "TotalOperatorMachines": 100,
        "TotalCommunicatingMachines": 97,
        "TotalActiveMachines": 41,
        "TotalSilentMachines": 3,
    },
    "MachineDashboard": {
        "UnitOfMeasure": "Kilowatt hour",
        "UnitOfMeasureSymbol": "kWh",
        "NumberOfChargingSessions": 7,
        "NumberOfTransactionsForTimeInterval": 7,
        "SalesAmountForTimeInterval": 84.35,
        "TotalChargingSessionsDuration": 20160,
        "TotalEnergyConsumption": 131.482,
    },
    "TimePeriod": None,
}


# --- the server (its own process) -------------------------------------------------


def canned_reply(body: bytes, *extra: str) -> bytes:
    """Pure: a keep-alive 200 with the headers an API gateway typically adds."""
    head = [
        "HTTP/1.1 200 OK",
        "Date: Mon, 30 Nov 2026 18:00:00 GMT",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
        "Cache-Control: no-cache",
        "Vary: Accept-Encoding",
        "Strict-Transport-Security: max-age=31536000",
        "X-Correlation-Id: 5b0e8f7a-2c1d-4e3f-9a8b-7c6d5e4f3a2b",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def serve() -> None:
    """Listen on a loopback port (printed on stdout) and answer until killed."""
    body = json.dumps(DASHBOARD).encode()
    plain = canned_reply(body)
    packed = canned_reply(gzip.compress(body, mtime=0), "Content-Encoding: gzip")
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=answer, args=(conn, plain, packed), daemon=True).start()


def answer(conn: socket.socket, plain: bytes, packed: bytes) -> None:
    pending = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            conn.sendall(packed if target.startswith(b"/gzip/") else plain)


class Server:
    """The server process; ``base`` is its URL prefix for plain or gzip answers."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.client_cpu", "--serve"],
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())

    def base(self, packed: bool) -> str:
        return f"http://127.0.0.1:{self.port}/{'gzip' if packed else 'plain'}"

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait()


# --- the layers under test -----------------------------------------------------------


Send = Callable[[], object]


def layer(name: str, base: str, threads: int) -> tuple[Send, Callable[[], None]]:
    """A function sending one request through ``name`` (safe to call from
    ``threads`` threads at once), and one closing it."""
    url = f"{base}{PATH}?" + "&".join(f"{k}={v}" for k, v in PARAMS.items())
    if name == "client":
        client = LynxClient(
            LynxConfig(base_url=base, token=TOKEN, rate_limit_per_second=0.0),
            observer=lambda _code, _seconds: None,
            rate_limiter=RateLimiter(0.0),
            token_gate=TokenGate(),
            stop=threading.Event(),
        )
        return lambda: client.get_json(PATH, PARAMS, TOKEN), client.close
    if name == "transport":
        transport = Transport(
            timeout=10.0,
            pool_size=threads,
            headers={k: HEADERS[k] for k in ("User-Agent", "Accept", "Accept-Encoding")},
            observer=lambda _code, _seconds: None,
        )
        per_request = {k: HEADERS[k] for k in ("Authorization", "X-Request-Attempt")}
        return lambda: transport.exchange("GET", url, per_request).body, transport.close
    if name == "urllib3":
        host, _, target = url.removeprefix("http://").partition("/")
        address, port = host.split(":")
        pool = urllib3.HTTPConnectionPool(address, int(port), maxsize=threads)

        def send() -> bytes:
            return pool.urlopen(
                "GET", "/" + target, headers=HEADERS, retries=False, redirect=False, timeout=10.0
            ).data

        return send, pool.close
    if name == "http.client":
        return _http_client(url)
    if name == "nothing":  # the loop's own cost (and the sleeps' with --gap)
        return lambda: None, lambda: None
    raise ValueError(name)


def _http_client(url: str) -> tuple[Send, Callable[[], None]]:
    host, _, target = url.removeprefix("http://").partition("/")
    address, port = host.split(":")
    local = threading.local()
    opened: list[http.client.HTTPConnection] = []

    def send() -> bytes:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(address, int(port), timeout=10.0)
            opened.append(conn)
        conn.request("GET", "/" + target, headers=HEADERS)
        response = conn.getresponse()
        body = response.read()
        if response.getheader("Content-Encoding") == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        return body

    def close() -> None:
        for conn in opened:
            conn.close()

    return send, close


# --- measuring -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    layer: str
    gzip: bool
    threads: int


@dataclass(frozen=True)
class Measured:
    layer: str
    gzip: bool
    threads: int
    requests: int
    cpu_us: list[float]  # CPU per request of each repetition, microseconds
    wall_us: list[float]


def run_case(
    case: Case, base: str, requests_: int, warmup: int, gap: float = 0.0
) -> tuple[float, float]:
    """CPU and wall seconds this process spent on ``requests_`` requests (after
    ``warmup`` per thread), spread over ``case.threads`` threads, each thread
    sleeping ``gap`` seconds after each request."""
    send, close = layer(case.layer, base, case.threads)
    warmed = threading.Barrier(case.threads + 1)
    start = threading.Barrier(case.threads + 1)
    share = requests_ // case.threads

    def work() -> None:
        for _ in range(warmup):
            send()
        warmed.wait()
        start.wait()
        for _ in range(share):
            send()
            if gap:
                time.sleep(gap)

    workers = [threading.Thread(target=work) for _ in range(case.threads)]
    for worker in workers:
        worker.start()
    warmed.wait()
    cpu, wall = time.process_time(), time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    close()
    return cpu, wall


def measure(
    cases: Sequence[Case], server: Server, requests_: int, repeats: int, gap: float
) -> list[Measured]:
    """Every case ``repeats`` times, the cases interleaved (in a shuffled order
    each round) so a slow stretch of the machine is shared among them."""
    cpu: dict[Case, list[float]] = {case: [] for case in cases}
    wall: dict[Case, list[float]] = {case: [] for case in cases}
    order = list(cases)
    rng = random.Random(22)
    for _ in range(repeats):
        rng.shuffle(order)
        for case in order:
            used, took = run_case(case, server.base(case.gzip), requests_, 50, gap)
            done = requests_ // case.threads * case.threads
            cpu[case].append(used / done * 1e6)
            wall[case].append(took / done * 1e6)
    return [Measured(c.layer, c.gzip, c.threads, requests_, cpu[c], wall[c]) for c in cases]


# --- callgrind ------------------------------------------------------------------------


def instructions(case: Case, base: str, requests_: int) -> int:
    """Instructions the whole process executes for ``requests_`` requests (one run
    under callgrind, start-up included)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.client_cpu",
                "--once",
                case.layer,
                "--base",
                base,
                "--threads",
                str(case.threads),
                "--requests",
                str(requests_),
            ],
            check=True,
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        totals = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.MULTILINE)
        assert totals is not None, "callgrind wrote no totals"
        return int(totals.group(1))


def count(cases: Sequence[Case], server: Server, low: int, high: int) -> dict[Case, float]:
    """Instructions per request: (count at ``high`` - count at ``low``) / (high - low)."""
    per_request = {}
    for case in cases:
        base = server.base(case.gzip)
        spread = instructions(case, base, high) - instructions(case, base, low)
        per_request[case] = spread / (high - low)
        print(f"  callgrind {describe(case)}: {per_request[case]:,.0f}", file=sys.stderr)
    return per_request


# --- reporting --------------------------------------------------------------------------


def describe(case: Case | Measured) -> str:
    return f"{case.layer}, {'gzip' if case.gzip else 'plain'}, {case.threads} thread(s)"


def table(measured: Sequence[Measured], counted: dict[Case, float]) -> str:
    rows = [
        "| layer | body | threads | CPU µs/request (median, min) | instructions/request |",
        "|---|---|---:|---:|---:|",
    ]
    for m in measured:
        case = Case(m.layer, m.gzip, m.threads)
        ir = f"{counted[case] / 1000:,.0f} k" if case in counted else "-"
        rows.append(
            f"| {m.layer} | {'gzip' if m.gzip else 'plain'} | {m.threads} "
            f"| {statistics.median(m.cpu_us):,.0f}, {min(m.cpu_us):,.0f} | {ir} |"
        )
    return "\n".join(rows)


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], check=False, capture_output=True, text=True, cwd=REPO)
    return done.stdout.strip()


def write(
    measured: Sequence[Measured], counted: dict[Case, float], label: str, output: Path
) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = output / f"client-cpu-{stamp}{'-' + label if label else ''}.json"
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "exporter")
    document = {
        "label": label,
        "commit": commit + ("+dirty" if dirty else ""),
        "python": platform.python_version(),
        "requests": requests.__version__,
        "urllib3": importlib.metadata.version("urllib3"),
        "cpu": platform.processor() or platform.machine(),
        "measured": [asdict(m) for m in measured],
        "instructions_per_request": [
            {**asdict(case), "instructions": round(ir)} for case, ir in counted.items()
        ],
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


def profile(case: Case, server: Server, requests_: int) -> None:
    send, close = layer(case.layer, server.base(case.gzip), case.threads)
    for _ in range(50):
        send()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests_):
        send()
    profiler.disable()
    close()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.client_cpu", description=__doc__)
    add = parser.add_argument
    add("--layers", default=",".join(LAYERS), help="which of " + ", ".join(LAYERS))
    add("--threads", default="1,4", help="thread counts, e.g. 1,4")
    add("--requests", type=int, default=2000, help="requests per measurement")
    add("--repeats", type=int, default=5, help="measurements per case")
    add("--gap", type=float, default=0.0, help="seconds each thread sleeps between requests")
    add("--callgrind", action="store_true", help="also count instructions (valgrind)")
    add("--callgrind-requests", default="100,400", help="LOW,HIGH requests per count")
    add("--profile", metavar="LAYER", help="print a cProfile of LAYER (1 thread) and stop")
    add("--gzip-only", action="store_true")
    add("--label", default="", help="appended to the results file's name")
    add("--output", type=Path, default=RESULTS, help=f"directory of results (default {RESULTS})")
    add("--serve", action="store_true", help=argparse.SUPPRESS)
    add("--once", metavar="LAYER", help=argparse.SUPPRESS)  # one run, for callgrind
    add("--base", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve()
        return 0
    threads = [int(n) for n in args.threads.split(",")]
    if args.once:
        run_case(Case(args.once, False, threads[0]), args.base, args.requests, warmup=0)
        return 0
    server = Server()
    try:
        if args.profile:
            profile(Case(args.profile, True, 1), server, args.requests)
            return 0
        bodies = (True,) if args.gzip_only else (False, True)
        cases = [
            Case(name, packed, n)
            for name in args.layers.split(",")
            for packed in bodies
            for n in threads
        ]
        measured = measure(cases, server, args.requests, args.repeats, args.gap)
        counted: dict[Case, float] = {}
        if args.callgrind:
            low, high = (int(n) for n in args.callgrind_requests.split(","))
            counted = count(cases, server, low, high)
    finally:
        server.stop()
    print(table(measured, counted))
    print(f"written: {write(measured, counted, args.label, args.output)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
