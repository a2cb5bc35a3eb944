"""crc32_combine: the gzip trailer's checksum from the segments' checksums must be
zlib's CRC-32 of the whole body, whatever the segments' lengths."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.metrics.crc32 import crc32_combine


@settings(max_examples=300, deadline=None)
@given(first=st.binary(max_size=300), second=st.binary(max_size=3000))
def test_combined_checksum_is_the_checksum_of_the_concatenation(
    first: bytes, second: bytes
) -> None:
    combined = crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
    assert combined == zlib.crc32(first + second)


@settings(max_examples=25, deadline=None)
@given(head=st.binary(min_size=1, max_size=64), zeros=st.integers(0, 1 << 22))
def test_long_segments_use_every_power_of_two(head: bytes, zeros: int) -> None:
    """Lengths up to 4 MiB: each set bit of the length is one table."""
    tail = bytes(zeros)
    assert crc32_combine(zlib.crc32(head), zlib.crc32(tail), zeros) == zlib.crc32(head + tail)


@settings(max_examples=50, deadline=None)
@given(segments=st.lists(st.binary(max_size=200), max_size=30))
def test_a_fold_over_segments_is_the_checksum_of_their_join(segments: list[bytes]) -> None:
    checksum = 0  # zlib.crc32(b"")
    for segment in segments:
        checksum = crc32_combine(checksum, zlib.crc32(segment), len(segment))
    assert checksum == zlib.crc32(b"".join(segments))
