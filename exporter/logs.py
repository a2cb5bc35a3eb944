"""structlog set-up: logfmt or JSON lines on stderr (stdout stays clean for --once).

One event is one physical line in either format, whatever its values hold: a
machine name or an upstream text with a carriage return, an escape sequence or
a Unicode line separator cannot start a forged line (see :func:`logfmt_value`).
A last processor scrubs every registered secret from every rendered line, as a
belt to the braces of never logging tokens in the first place.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")
REDACTED = "<redacted>"
MAX_LEARNT = 64
# Shorter strings are never scrubbed: replacing, say, "e" would garble every line
# (a JSON line would stop being JSON), and a token that short guards nothing.
MIN_SECRET_CHARS = 8


class SecretScrubber:
    """Replaces known secret strings in rendered log lines. Thread-safe.

    Ignores secrets shorter than MIN_SECRET_CHARS. One holding a quote or a
    backslash is looked for escaped too, as the renderers write it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._configured: tuple[str, ...] = ()
        # Secrets learnt while running (access tokens exchanged for refresh tokens):
        # the latest few, which are the ones requests may still carry.
        self._learnt: collections.deque[str] = collections.deque(maxlen=MAX_LEARNT)

    def set(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._configured = tuple(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
            self._rebuild()

    def add(self, secret: str) -> None:
        """Scrub ``secret`` too, until MAX_LEARNT newer ones were added."""
        if len(secret) < MIN_SECRET_CHARS:
            return
        with self._lock:
            self._learnt.append(secret)
            self._rebuild()

    def _rebuild(self) -> None:
        # Longest first, so a secret that contains another is fully replaced.
        secrets = {f for s in (*self._configured, *self._learnt) for f in _rendered(s)}
        self._secrets = tuple(sorted(secrets, key=len, reverse=True))

    def __call__(self, _logger: Any, _method: str, line: Any) -> Any:
        if not isinstance(line, str):
            return line
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        return line


def _rendered(secret: str) -> set[str]:
    """Pure: how ``secret`` may show in a line: as it is (a plain message, a logfmt
    value) and escaped (JSON escapes a quote and a backslash; logfmt a quote, and
    a backslash in a quoted value)."""
    return {secret, secret.replace("\\", "\\\\").replace('"', '\\"')}


# Escapes Go's strconv (and so go-logfmt) and Python read alike.
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BARE_UNSAFE = frozenset(' ="')


def _code_escape(char: str) -> str:
    """Pure. ``\\xNN`` (ASCII), ``\\uNNNN`` or ``\\UNNNNNNNN``: a code point, never a byte."""
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def logfmt_value(text: str) -> str:
    """Pure. ``text`` as one logfmt value on one line: bare when it is printable
    and holds no space, quote or ``=``; else quoted, with backslashes and quotes
    escaped and every character :meth:`str.isprintable` refuses escaped (the
    controls CR, LF, ESC, NEL..., format characters such as zero-width and bidi
    controls, the line and paragraph separators, lone surrogates, and spaces
    other than the plain one)."""
    if text.isprintable() and _BARE_UNSAFE.isdisjoint(text):
        return text  # also the empty value: `key=`
    escaped = (
        _SHORT_ESCAPES.get(char) or (char if char.isprintable() else _code_escape(char))
        for char in text
    )
    return '"' + "".join(escaped) + '"'


def logfmt_key(key: str) -> str:
    """Pure. A key cannot be quoted: what would break it is escaped as a code."""
    if key.isprintable() and _BARE_UNSAFE.isdisjoint(key):
        return key or "_"
    return "".join(
        _code_escape(char) if char in _BARE_UNSAFE or not char.isprintable() else char
        for char in key
    )


class LogfmtRenderer:
    """``key=value`` pairs, the ``key_order`` keys first (those missing dropped),
    then the others as logged; ``True`` renders as a bare key, ``None`` as
    ``key=``. Unlike structlog's renderer, which passes a CR or an ESC through,
    every value stays on one line (:func:`logfmt_value`)."""

    def __init__(self, key_order: Sequence[str] = ("ts", "level", "event")) -> None:
        self._key_order = tuple(key_order)

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
        first = [key for key in self._key_order if key in event]
        rest = [key for key in event if key not in self._key_order]
        return " ".join(_field(str(key), event[key]) for key in (*first, *rest))


def _field(key: str, value: object) -> str:
    name = logfmt_key(key)
    if value is True:
        return name
    if value is None:
        return f"{name}="
    text = "false" if value is False else str(value)
    return f"{name}={logfmt_value(text)}"


def _level_name(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    event["level"] = "warn" if method == "warning" else method
    return event


def configure(
    level: str, fmt: str, scrubber: SecretScrubber, stream: TextIO | None = None
) -> FilteringBoundLogger:
    """Configure structlog for the process and return the root logger."""
    numeric = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}.get(
        level, logging.ERROR
    )
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else LogfmtRenderer()
    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _level_name,
            structlog.processors.format_exc_info,
            renderer,
            scrubber,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logger: FilteringBoundLogger = structlog.get_logger()
    return logger
