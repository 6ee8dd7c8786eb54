"""coalesce: the regrouping of a streamed body on its way to a peer; RelayedBody: a
peer's streamed answer relayed, its connection released however the relay ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from carevault_common.clients import coalesce
from carevault_common.proxy import RelayedBody


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


@pytest.fixture
async def peer() -> AsyncIterator[str]:
    """A real HTTP server answering 4 MiB, more than a client reads ahead."""

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=bytes(4 * 1024 * 1024))

    app = web.Application()
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/big"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_a_relayed_body_dropped_before_its_first_byte_releases_the_peer_connection(peer: str) -> None:
    async with aiohttp.ClientSession() as session:
        upstream = await session.get(peer)
        await RelayedBody(upstream).aclose()  # as api does when the audit event is refused
        assert upstream.connection is None


async def test_a_relayed_body_read_to_the_end_is_whole_and_releases_the_peer_connection(peer: str) -> None:
    async with aiohttp.ClientSession() as session:
        upstream = await session.get(peer)
        relayed = [chunk async for chunk in RelayedBody(upstream)]
        assert sum(map(len, relayed)) == 4 * 1024 * 1024
        assert upstream.connection is None
