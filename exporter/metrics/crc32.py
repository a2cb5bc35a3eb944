"""The CRC-32 of a concatenation from its parts' CRC-32s, without the bytes. Pure.

zlib's ``crc32_combine``, which Python's zlib module does not offer: the gzip
body's trailer needs the CRC-32 of the whole plain body, which is kept as
segments shared between renders (exporter/metrics/exposition.py); combining the
segments' checksums costs microseconds each, where ``zlib.crc32`` over the body
would read every byte again at every render.

The arithmetic is zlib's (crc32.c ``multmodp``/``x2nmodp``): appending ``n`` bytes
multiplies a CRC by x^(8n) modulo the CRC-32 polynomial. Multiplying by each
x^(2^k) is one lookup per byte of the CRC in a table built the first time that
power is needed (4 KiB each; a segment of length n uses one per set bit of n).
"""

from __future__ import annotations

from array import array
from typing import Final

__all__ = ["crc32_combine"]

_POLY: Final = 0xEDB88320  # CRC-32, bit-reflected: bit 31 is x^0
_X0: Final = 1 << 31


def _times_x(value: int) -> int:
    return (value >> 1) ^ _POLY if value & 1 else value >> 1


def _multiply(a: int, b: int) -> int:
    """a * b modulo the polynomial (zlib's multmodp)."""
    product, mask = 0, _X0
    while mask and a:
        if a & mask:
            product ^= b
            a ^= mask
        mask >>= 1
        b = _times_x(b)
    return product


def _powers() -> tuple[int, ...]:
    """x^(2^k) modulo the polynomial, k = 0..63."""
    out = [_X0 >> 1]  # x^1
    while len(out) < 64:
        out.append(_multiply(out[-1], out[-1]))
    return tuple(out)


_X2N: Final = _powers()
_TABLES: list[array[int] | None] = [None] * 64


def _table(k: int) -> array[int]:
    """Multiplication by x^(2^k), byte by byte: 4 x 256 products."""
    table = _TABLES[k]
    if table is not None:
        return table
    basis = [0] * 32  # basis[i]: the product for the bit 1 << i
    value = _X2N[k]
    for bit in range(31, -1, -1):  # bit 31 is x^0: each lower bit is one more x
        basis[bit] = value
        value = _times_x(value)
    entries = [0] * 1024
    for byte in range(4):
        row = byte * 256
        for index in range(1, 256):
            low = index & -index
            entries[row + index] = (
                entries[row + (index ^ low)] ^ basis[8 * byte + low.bit_length() - 1]
            )
    table = _TABLES[k] = array("I", entries)  # two threads may build it: the same table
    return table


def crc32_combine(first: int, second: int, second_length: int) -> int:
    """``zlib.crc32(a + b)`` from ``zlib.crc32(a)``, ``zlib.crc32(b)`` and ``len(b)``."""
    crc, k, length = first, 3, second_length  # x^(8n): start at x^(2^3)
    while length:
        if length & 1:
            t = _table(k)
            crc = (
                t[crc & 255]
                ^ t[256 + (crc >> 8 & 255)]
                ^ t[512 + (crc >> 16 & 255)]
                ^ t[768 + (crc >> 24)]
            )
        length >>= 1
        k += 1
    return crc ^ second
