"""Reading a file named on the report's command line (``--http.config.file``,
``--excluded``).

Unlike the exporter's configured files (exporter/config/files.py: regular files
only, capped), any readable file is taken, a pipe too
(``--excluded <(generate-windows)``): the report runs once, in the foreground,
for the operator who named the file.
"""

from __future__ import annotations

from pathlib import Path

from exporter.config.validate import ConfigError


def read_text(path: Path) -> str:
    """The file's UTF-8 text; raises ConfigError naming the path and the cause."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or type(exc).__name__}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
