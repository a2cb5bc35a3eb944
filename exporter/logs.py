"""structlog set-up: logfmt or JSON lines on stderr (stdout stays clean for --once).

A last processor scrubs every registered secret from every rendered line, as a
belt to the braces of never logging tokens in the first place.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
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
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.processors.LogfmtRenderer(
            key_order=["ts", "level", "event"], drop_missing=True
        )
    )
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
