"""The process entry point: signal handlers first, then everything slow.

Only the standard library is imported before the handlers are installed, so a
SIGHUP in the first second (a config-management tool reloading everything) is a
reload, not the default "terminate". The process ends with ``os._exit`` once
output is flushed: a poll worker blocked on a socket upstream (the executor's
threads are not daemons) must not hold a SIGTERM beyond its 5 s.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from exporter.signals import Signals


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
