"""The floor under a /metrics scrape on this machine: the exporter's own bytes,
served by a process that does nothing else.

``python -m bench.floor PLAIN GZIPPED`` serves the two files (captured from the
exporter a moment before) to every GET, gzip when the request accepts it, on a
free loopback port it prints first; one thread per keep-alive connection, the
head and body in one blocking ``sendall`` each. Scraped by the same scraper in
the same load (the exporter polling at capacity beside it), its latency is what
moving the bytes costs here — two copies of every byte through the kernel, a
Python client reading them — with no polling, rendering or GIL of the exporter's
in the way: no server of a body this size could answer faster on this machine.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

from bench.procs import REPO, BenchError

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
    b"Content-Length: %d\r\n%s\r\n"
)


def _serve(connection: socket.socket, plain: bytes, gzipped: bytes) -> None:
    with connection, connection.makefile("rb") as reader:
        while True:
            gzip = False
            while (line := reader.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    return  # the client closed the connection
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"accept-encoding" and b"gzip" in value.lower():
                    gzip = True
            body = gzipped if gzip else plain
            encoding = b"Content-Encoding: gzip\r\n" if gzip else b""
            connection.sendall(HEAD % (len(body), encoding))
            connection.sendall(body)


def main(argv: list[str]) -> int:
    plain, gzipped = (Path(name).read_bytes() for name in argv)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=_serve, args=(connection, plain, gzipped), daemon=True).start()


class FloorServer:
    """``python -m bench.floor`` as a child process, for a ``with`` block."""

    def __init__(self, plain: Path, gzipped: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", str(plain), str(gzipped)],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise BenchError(f"bench.floor printed {line!r} instead of its port")
        self.port = int(line)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FloorServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
