"""Signal handling: SIGTERM/SIGINT stop the process, SIGHUP reloads it.

The entry point (exporter/launch.py) installs these handlers before it imports
anything slow, so this module imports only ``signal`` and ``threading``.
"""

from __future__ import annotations

import signal
import threading

# Not ``typing.TYPE_CHECKING``: importing typing costs milliseconds before the
# handlers are installed; type checkers treat this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType


class Signals:
    """SIGTERM/SIGINT → ``stop``; SIGHUP → ``reload``. Handlers only set events."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self) -> Signals:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        return self

    def restore_defaults(self) -> None:
        """For the one-shot modes (--once, --config.check): plain signal behaviour."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def _on_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload.set()
