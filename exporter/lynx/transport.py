"""The HTTP exchange under the Lynx client: one request, one bounded answer.

What an upstream the exporter does not control can do to it, and what stops it:

- **Time**: ``lynx.timeout`` bounds the whole exchange, connect to last byte. The
  socket's timeout is lowered to the time left before every read, the response's
  status line and headers included (a per-read timeout alone lets headers trickled
  at one byte a second hold a poll forever).
- **Size**: a body is read up to a cap, counted both as it arrives and after
  decompression (a small gzip body can inflate to gigabytes). A redirect's body is
  never read at all.
- **Redirects** are never followed: the request carries a token, which must not go
  wherever a ``Location`` points. The caller sees the 3xx status.
- **Cookies** are never kept: requests are sent through the adapter directly, not
  through a ``requests.Session``, so nothing stores what ``Set-Cookie`` says (and a
  Session would read a redirect's whole body to follow it, even when told not to).

Pure decisions aside, this module is I/O; nothing it raises carries text from the
HTTP stack (see :func:`cause_name`).
"""

from __future__ import annotations

import io
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool

from exporter.lynx.errors import BadPayloadError, ConnectionFailed, LynxError, TimeoutError_

# An evDashboard answer is a few hundred bytes and a vendor error body a few hundred
# more; anything this large is not one, and reading it unbounded would let a broken
# upstream exhaust our memory. Applies to the bytes received and, separately, to the
# bytes they decompress to.
MAX_BODY_BYTES = 1 << 20
# What we accept; anything else in Content-Encoding is refused unread.
ACCEPT_ENCODING = "gzip, deflate"

_DEADLINE = threading.local()


class DeadlinePassed(Exception):
    """The exchange did not complete within its deadline."""


class BodyTooLarge(Exception):
    """The body (received or decompressed) exceeded the cap."""


class BadEncoding(Exception):
    """A Content-Encoding we did not ask for, or a body that does not decode."""


@dataclass(frozen=True)
class Reply:
    """One exchange's outcome: a status, with the (capped) body unless it was a 3xx.

    Raw and internal to ``lynx/``: only the client reads it, and turns it into an
    :class:`~exporter.lynx.client.Answer` (decoded, retries counted) or an error."""

    status: int
    headers: Mapping[str, str]
    body: bytes | None
    duration: float  # seconds, connect to last byte


# A request observation: (code label, seconds). The code is the HTTP status,
# or "timeout" / "connection" when no status arrived.
RequestObserver = Callable[[str, float], None]


class Transport:
    """Sends one request and reads its answer within ``timeout``; thread-safe.

    Every request is observed; anything but a status is one of our own errors
    (``timeout``, ``connection``, ``bad_payload`` for a body over the cap)."""

    def __init__(
        self,
        *,
        timeout: float,
        pool_size: int,
        headers: Mapping[str, str],
        observer: RequestObserver,
    ) -> None:
        self._timeout = timeout
        self._observe = observer
        self._headers = dict(headers)
        self._adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        # Proxy settings from the environment (HTTPS_PROXY, NO_PROXY, ...), read once
        # per origin, not on every request; ~/.netrc is never consulted (it would
        # replace our Authorization header).
        self._proxies: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        self._adapter.close()

    def exchange(self, method: str, url: str, headers: Mapping[str, str]) -> Reply:
        """One request and its answer, connect to last byte within the timeout."""
        started = time.monotonic()
        deadline = started + self._timeout
        status: int | None = None
        try:
            with deadline_scope(deadline):
                response = self._adapter.send(
                    self._prepare(method, url, headers),
                    stream=True,
                    timeout=(self._timeout, self._timeout),
                    proxies=self._proxies_for(url),
                )
                status = response.status_code
                try:
                    body = None if 300 <= status < 400 else read_body(response, deadline)
                finally:
                    response.close()
        except Exception as exc:  # the HTTP stack's texts may quote the token
            raise self._failure(exc, status, time.monotonic() - started) from None
        duration = time.monotonic() - started
        self._observe(str(status), duration)
        return Reply(status=status, headers=response.headers, body=body, duration=duration)

    def _proxies_for(self, url: str) -> dict[str, str]:
        origin = "/".join(url.split("/", 3)[:3])
        proxies = self._proxies.get(origin)
        if proxies is None:
            proxies = self._proxies[origin] = requests.utils.get_environ_proxies(origin)
        return proxies

    def _failure(self, exc: Exception, status: int | None, elapsed: float) -> LynxError:
        """Our own, secret-free error for an exchange that raised ``exc``."""
        if isinstance(
            exc, requests.Timeout | urllib3.exceptions.TimeoutError | DeadlinePassed | TimeoutError
        ):
            self._observe("timeout", elapsed)
            return TimeoutError_(f"no complete answer within {self._timeout:g}s", status=status)
        if isinstance(exc, BodyTooLarge) and status is not None:
            self._observe(str(status), elapsed)
            return BadPayloadError(
                f"HTTP {status} with a body over {MAX_BODY_BYTES} bytes (as sent or decompressed)",
                status=status,
            )
        if isinstance(exc, BadEncoding) and status is not None:
            self._observe(str(status), elapsed)
            return BadPayloadError(
                f"HTTP {status} with a body in an encoding not asked for, or corrupt",
                status=status,
            )
        # urllib3's own errors surface here because the body is read from the raw
        # stream (a reset mid-body is a ProtocolError); anything else the stack
        # raises (a header it cannot send, a malformed status line) lands here too.
        self._observe("connection", elapsed)
        return ConnectionFailed(f"connection failed ({cause_name(exc)})", status=status)

    def _prepare(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> requests.PreparedRequest:
        """The request, prepared here rather than by ``Session.request``: no cookies,
        no ~/.netrc, no hooks, and the generic merging of those was about a sixth of
        the CPU of each poll. The query is the caller's own (dates and ids).

        The headers are a plain dict, not requests' CaseInsensitiveDict: urllib3
        takes any mapping and walks it several times per request, which costs a
        CaseInsensitiveDict about 5 % of the exchange. Every name is spelled one way
        here, and the fixed and per-request names never overlap."""
        prepared = requests.PreparedRequest()  # body None, default hooks, no cookies
        prepared.method = method
        prepared.url = url
        merged = {**self._headers, **headers}
        if method == "POST":
            merged["Content-Length"] = "0"
        prepared.headers = merged  # type: ignore[assignment]  # see above
        return prepared


@contextmanager
def deadline_scope(deadline: float) -> Iterator[None]:
    """Within this block, every socket read of this thread's exchange ends by
    ``deadline`` (``time.monotonic`` seconds)."""
    previous = getattr(_DEADLINE, "value", None)
    _DEADLINE.value = deadline
    try:
        yield
    finally:
        _DEADLINE.value = previous


class _DeadlineReader(io.RawIOBase):
    """A socket's read side that gives up at a deadline, whatever the peer trickles."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """Stands in for the connection's socket while http.client builds the response,
    so the response reads (status line, headers, body) through a _DeadlineReader."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str = "rb", *_args: object, **_kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineMixin:
    sock: Any

    def getresponse(self) -> Any:
        deadline = getattr(_DEADLINE, "value", None)
        real = self.sock
        if deadline is None or real is None:
            return super().getresponse()  # type: ignore[misc]
        self.sock = _DeadlineSocket(real, deadline)
        try:
            return super().getresponse()  # type: ignore[misc]
        finally:
            if self.sock is not None:  # http.client closes it for "Connection: close"
                self.sock = real


class _HTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _install(manager: Any) -> Any:
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections honour :func:`deadline_scope`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pools: dict[tuple[object, ...], ConnectionPool] = {}

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> ConnectionPool:
        """requests' pool for the request, looked up once per origin and proxy
        settings rather than on every request (parsing the URL, selecting the proxy
        and normalising the pool key were a tenth of the exchange). The manager
        keeps ``pool_connections`` pools; the one it drops for another origin is
        closed by urllib3 1 (then looked up again here) and merely dropped by
        urllib3 2 (then kept here, with its connections, until :meth:`close`)."""
        origin = "/".join((request.url or "").split("/", 3)[:3])
        key = (origin, tuple(proxies.items()) if proxies else (), verify, cert)
        pool = self._pools.get(key)
        if pool is None or getattr(pool, "pool", None) is None:  # closed: .pool is None
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def close(self) -> None:
        # urllib3 2 drops a pool from the manager without closing it; ours may
        # still hold it.
        super().close()
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """The status, headers and raw stream, and nothing the transport never reads:
        no cookie jar filled from ``Set-Cookie`` (none is kept), no text encoding
        looked up (the body is read as bytes), no copy of the headers (urllib3's
        are case-insensitive already)."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = resp.headers
        response.raw = resp
        response.reason = resp.reason
        response.request = req
        return response

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _install(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **kwargs)
        if fresh and not proxy.lower().startswith("socks"):
            _install(manager)
        return manager


def read_body(response: requests.Response, deadline: float, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, decompressed, or an exception: _DeadlinePassed once ``deadline``
    (``time.monotonic``) passes, BodyTooLarge past ``limit`` bytes received or
    decompressed, BadEncoding for an encoding we did not ask for."""
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    raw = response.raw
    chunks: list[bytes] = []
    received = produced = 0
    while True:
        if deadline - time.monotonic() <= 0:
            raise DeadlinePassed
        chunk = raw.read1(65536, decode_content=False)
        if not chunk:
            break
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge
        if decoder is not None:
            chunk = _inflate(decoder, chunk, limit - produced)
        produced += len(chunk)
        chunks.append(chunk)
    if decoder is not None:
        tail = decoder.flush()
        if produced + len(tail) > limit:
            raise BodyTooLarge
        chunks.append(tail)
    return b"".join(chunks)


def _decoder(encoding: str) -> Any:
    """Pure: a zlib decompressor for the Content-Encoding, None for identity."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return _Deflate()
    raise BadEncoding


def _inflate(decoder: Any, chunk: bytes, room: int) -> bytes:
    # max_length stops the inflation one byte past the room left: a bomb is
    # detected without ever holding more than the cap.
    try:
        out: bytes = decoder.decompress(chunk, room + 1)
    except zlib.error:
        raise BadEncoding from None
    if len(out) > room or decoder.unconsumed_tail:
        raise BodyTooLarge
    return out


class _Deflate:
    """ "deflate" as servers send it: zlib-wrapped, or (wrongly, but often) raw."""

    def __init__(self) -> None:
        self._inner: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            self._inner = zlib.decompressobj(zlib.MAX_WBITS)
            try:
                out: bytes = self._inner.decompress(data, max_length)
            except zlib.error:
                self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._inner.decompress(data, max_length)
        else:
            out = self._inner.decompress(data, max_length)
        self.unconsumed_tail = self._inner.unconsumed_tail
        return out

    def flush(self) -> bytes:
        return b"" if self._inner is None else bytes(self._inner.flush())


def cause_name(exc: BaseException) -> str:
    """Pure: a short, secret-free description of a transport failure: the innermost
    exception's class name, or a fixed phrase for the common socket errors. Never the
    exception's text, which may quote a URL, a header or a token."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        assert nxt is not None
        seen = nxt
    if isinstance(exc.args[0] if exc.args else None, BaseException):
        seen = exc.args[0]
    name = type(seen).__name__
    text = str(seen).lower()
    if "name or service not known" in text or "nodename nor servname" in text:
        return "name resolution failed"
    if "refused" in text:
        return "connection refused"
    if "reset" in text:
        return "connection reset"
    return name
