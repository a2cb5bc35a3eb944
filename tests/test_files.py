"""``read_regular_file``: files are read as files (issue 19, item A).

Every kind of file that is not a regular one is refused before anything could
block on it, with a fixed reason naming the kind and never the path; a file
over the cap is refused having cost no more memory than the cap. Each read runs
in a thread with a deadline, so a read that blocks fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import os
import socket
import stat
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.config.files import (
    CONFIG_FILE_MAX,
    TOKEN_FILE_MAX,
    FileReadError,
    KiB,
    MiB,
    not_regular,
    read_regular_file,
    size_text,
)
from tests.harness import run_with_deadline

DEADLINE = 10.0  # seconds: far beyond a refusal, which takes microseconds


def outcome(path: Path, cap: int = TOKEN_FILE_MAX) -> bytes | str:
    """The content, or the reason it was refused; fails if the read blocks."""

    def read() -> bytes | str:
        try:
            return read_regular_file(path, cap)
        except FileReadError as exc:
            return exc.reason

    return run_with_deadline(read, DEADLINE, "read_regular_file")


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        yield path


def make_fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


def make_loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a"


SPECIAL: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fifo": (make_fifo, "not a regular file: a FIFO"),
    "directory": (lambda tmp: tmp, "not a regular file: a directory"),
    "dev_zero": (lambda _tmp: Path("/dev/zero"), "not a regular file: a character device"),
    "dev_urandom": (lambda _tmp: Path("/dev/urandom"), "not a regular file: a character device"),
    "symlink_loop": (make_loop, "a symlink loop (too many levels of symbolic links)"),
    "missing": (lambda tmp: tmp / "missing", "No such file or directory"),
}


@pytest.mark.parametrize("kind", SPECIAL)
def test_anything_but_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    make, reason = SPECIAL[kind]
    assert outcome(make(tmp_path)) == reason


def test_a_symlink_to_a_fifo_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(make_fifo(tmp_path))
    assert outcome(tmp_path / "link") == "not a regular file: a FIFO"


def test_a_socket_is_refused(unix_socket: Path) -> None:
    assert outcome(unix_socket) == "not a regular file: a socket"


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    """Kubernetes mounts secrets as symlinks (..data/token): they must work."""
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "token").write_bytes(b"secret\n")
    (tmp_path / "token").symlink_to(tmp_path / "..data" / "token")
    assert outcome(tmp_path / "token") == b"secret\n"


def test_the_cap_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"t" * TOKEN_FILE_MAX)
    assert outcome(path) == b"t" * TOKEN_FILE_MAX
    path.write_bytes(b"t" * (TOKEN_FILE_MAX + 1))
    assert outcome(path) == "larger than 64 KiB"


def test_a_huge_file_costs_no_more_memory_than_the_cap(tmp_path: Path) -> None:
    """100 MB, sparse (instant to create): refused after reading 64 KiB + 1."""
    path = tmp_path / "token"
    with path.open("wb") as handle:
        handle.truncate(100 * 1000 * 1000)
    tracemalloc.start()
    try:
        with pytest.raises(FileReadError, match="larger than 64 KiB"):
            read_regular_file(path, TOKEN_FILE_MAX)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * TOKEN_FILE_MAX, peak


def test_the_reason_never_quotes_the_path(tmp_path: Path) -> None:
    """A token pasted where its file name belongs must not reach a log."""
    token = "TKN-pasted-as-a-path"
    for path in (tmp_path / token, tmp_path / token / "x", Path(f"{token}\0")):
        with pytest.raises(FileReadError) as caught:
            read_regular_file(path, TOKEN_FILE_MAX)
        assert token not in str(caught.value)
        assert token not in caught.value.reason


def test_a_nul_byte_in_the_name_is_a_reason_not_a_crash() -> None:
    assert outcome(Path("token\0file")) == "not a usable file name"


def test_kinds_and_sizes_are_named() -> None:
    assert not_regular(stat.S_IFREG | 0o600) is None
    assert not_regular(stat.S_IFBLK) == "not a regular file: a block device"
    assert size_text(TOKEN_FILE_MAX) == "64 KiB"
    assert size_text(CONFIG_FILE_MAX) == "16 MiB"
    assert size_text(3 * KiB + 1) == "3073 bytes"
    assert size_text(MiB) == "1 MiB"
