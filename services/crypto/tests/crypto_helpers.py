"""Helpers shared by the crypto tests (not fixtures)."""

from __future__ import annotations

from collections.abc import Iterator


def flips(blob: bytes) -> Iterator[tuple[int, bytes]]:
    """Every single-byte alteration of ``blob`` (one bit flipped at each position)."""
    for i in range(len(blob)):
        for mask in (0x01, 0x80):
            altered = bytearray(blob)
            altered[i] ^= mask
            yield i, bytes(altered)
