"""Reading the files a config names: regular files only, never more than a cap.

Every file the exporter reads because it is configured — the config file, token
and refresh-token files, the web config and its TLS files — goes through
:func:`read_regular_file`. A FIFO would block the reading thread until some
writer comes, ``/dev/zero`` never ends, a 100 MB "token" would be sent as a
header. So:

- ``stat`` refuses anything but a regular file before the file is opened at
  all (opening a device can itself have effects; a symlink is followed, as
  Kubernetes secrets are symlinks, and a loop of them is reported as such);
- the open is non-blocking, and ``fstat`` of the opened descriptor checks
  again, since the path may have been replaced in between;
- at most ``cap + 1`` bytes are read: a larger file is refused having cost
  no more memory than the cap.

Reading a regular file never waits on another process, so no read here can
block for good (a hung network file system aside, which no thread can undo).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from exporter.config.validate import ConfigError

KiB = 1024
MiB = 1024 * KiB

TOKEN_FILE_MAX = 64 * KiB  # a token is a header value; 64 KiB is far beyond any
CONFIG_FILE_MAX = 16 * MiB  # the config and the web config; 10,000 machines is ~0.5 MiB
PEM_FILE_MAX = 1 * MiB  # a certificate, key or CA bundle (a system bundle is ~0.2 MiB)

_READ_CHUNK = 1 * MiB

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileReadError(Exception):
    """Why a file cannot be read: a fixed text, never the path or the content
    (a token pasted where its file name belongs must not reach a log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def not_regular(mode: int) -> str | None:
    """Pure. None for a regular file, else why it is refused."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a plain file")
    return f"not a regular file: {kind}"


def size_text(size: int) -> str:
    """Pure. ``65536`` → ``"64 KiB"``."""
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def read_regular_file(path: Path, cap: int) -> bytes:
    """The content of the regular file at ``path``, at most ``cap`` bytes.
    Raises :class:`FileReadError` for anything else, checked before any read."""
    try:
        _refuse_special(os.stat(path).st_mode)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileReadError(_os_reason(exc)) from None
    except ValueError:  # a NUL byte in the path
        raise FileReadError("not a usable file name") from None
    try:
        _refuse_special(os.fstat(descriptor).st_mode)
        return _read_at_most(descriptor, cap)
    except OSError as exc:
        raise FileReadError(_os_reason(exc)) from None
    finally:
        os.close(descriptor)


def _refuse_special(mode: int) -> None:
    reason = not_regular(mode)
    if reason is not None:
        raise FileReadError(reason)


def _read_at_most(descriptor: int, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = os.read(descriptor, min(cap + 1 - size, _READ_CHUNK))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise FileReadError(f"larger than {size_text(cap)}")


def _os_reason(exc: OSError) -> str:
    """The error's kind, from its number: never its text, which quotes the path."""
    if exc.errno == errno.ELOOP:
        return "a symlink loop (too many levels of symbolic links)"
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return type(exc).__name__


def read_config_text(path: Path) -> str:
    """The text of a config file (the config or the web config): a regular
    UTF-8 file of at most CONFIG_FILE_MAX bytes, else a ConfigError naming it."""
    try:
        return read_regular_file(path, CONFIG_FILE_MAX).decode("utf-8")
    except FileReadError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.reason}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
