"""coalesce: the regrouping of a streamed body on its way to a peer."""

from __future__ import annotations

from collections.abc import AsyncIterator

from carevault_common.clients import coalesce


async def _pieces(sizes: list[int]) -> AsyncIterator[bytes]:
    for i, size in enumerate(sizes):
        yield bytes([i % 251]) * size


async def test_coalesce_keeps_every_byte_in_order_and_regroups_small_pieces() -> None:
    sizes = [10, 300, 5, 1000, 2000, 1, 4096, 7]
    expected = b"".join([bytes([i % 251]) * size for i, size in enumerate(sizes)])
    out = [chunk async for chunk in coalesce(_pieces(sizes), piece=1024)]
    assert b"".join(out) == expected
    assert all(len(chunk) >= 1024 for chunk in out[:-1])
    assert len(out) < len(sizes)


async def test_a_large_piece_passes_as_it_is() -> None:
    big = b"x" * 4096
    out = [chunk async for chunk in coalesce(_aiter([big]), piece=1024)]
    assert out == [big] and out[0] is big


async def _aiter(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item
