"""The process entry point: signal handlers first, then everything slow.

Nothing slow runs before the handlers are installed: this module imports only
``os``, ``sys`` and exporter/signals.py (``signal``, ``threading``), and the package's ``__init__``
looks nothing up (``exporter.__version__`` is lazy). So a SIGHUP a few
milliseconds after the interpreter has started (a config-management tool
reloading everything) is a reload, not the default "terminate"; what comes
before the handlers is the interpreter's own start-up.

The process ends with ``os._exit`` once output is flushed: a poll worker
blocked on a socket upstream (the executor's threads are not daemons) must not
hold a SIGTERM beyond its 5 s.
"""

from __future__ import annotations

import os
import sys

from exporter.signals import Signals

# Not ``typing.TYPE_CHECKING``: importing typing costs milliseconds before the
# handlers are installed; type checkers treat this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def run() -> NoReturn:
    """``nayax-ev-exporter`` / ``python -m exporter``."""
    signals = Signals().install()
    from exporter.cli import main  # noqa: PLC0415 - the heavy imports, after the handlers

    try:
        code = main(signals=signals)
    except SystemExit as exit_:  # argparse's --help, --version and usage errors
        code = _exit_code(exit_.code)
    except KeyboardInterrupt:  # Ctrl-C in --once (the daemon catches SIGINT itself)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_code(code: object) -> int:
    """What ``SystemExit(code)`` would have exited with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
