"""coalesce: the regrouping of a streamed body on its way to a peer; ForwardedBody: the
bounds on a client's body (size, pauses); RelayedBody: a peer's streamed answer
relayed, its connection released however the relay ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from starlette.requests import Request
from starlette.types import Message

from carevault_common.clients import ForwardedBody, coalesce
from carevault_common.errors import ClientClosedRequest, PayloadTooLarge, RequestTimeout
from carevault_common.proxy import RelayedBody, _read_whole


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


async def _pausing(pause_after: int, pause: float) -> AsyncIterator[bytes]:
    for i in range(4):
        if i == pause_after:
            await asyncio.sleep(pause)
        yield b"x" * 1000


async def test_a_body_whose_pauses_stay_under_the_idle_bound_passes_whole() -> None:
    body = ForwardedBody(_pausing(2, 0.05), 10_000, idle_seconds=1.0)
    assert b"".join([chunk async for chunk in body]) == b"x" * 4000
    assert body.error is None


async def test_a_body_that_pauses_past_the_idle_bound_is_given_up_with_408() -> None:
    body = ForwardedBody(_pausing(2, 5.0), 10_000, idle_seconds=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout) as refused:
        async for _ in body:
            pass
    assert 0.2 <= loop.time() - started < 2.0
    assert refused.value.status == 408 and refused.value.headers == {"connection": "close"}
    assert body.error is refused.value  # what the peer's client raises instead of "peer unavailable"


async def test_a_timeout_of_the_source_itself_is_not_taken_for_a_pause() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"x"
        raise TimeoutError("the source's own")

    with pytest.raises(TimeoutError, match="the source's own"):
        async for _ in ForwardedBody(failing(), 10_000, idle_seconds=5.0):
            pass


async def test_a_body_over_its_limit_is_refused_with_413() -> None:
    body = ForwardedBody(_pausing(9, 0), 2500)
    with pytest.raises(PayloadTooLarge):
        async for _ in body:
            pass
    assert isinstance(body.error, PayloadTooLarge)


def _request(*messages: Message, pause: float = 0.0, then_wait: bool = False) -> Request:
    """A request as the server hands it to the app (ASGI): its body in ``messages``,
    ``pause`` seconds apart; after them the client sends nothing more (``then_wait``)
    or is gone."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            await asyncio.sleep(pause)
            return queue.pop(0)
        if then_wait:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}, receive)


def _pieces_of(body: bytes, size: int) -> list[Message]:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1} for i, piece in enumerate(pieces)]


@pytest.mark.parametrize("idle_seconds", [None, 1.0])
async def test_a_small_body_is_read_whole(idle_seconds: float | None) -> None:
    request = _request(*_pieces_of(b"abc", 2))
    assert await _read_whole(request, 1024, idle_seconds) == b"abc"


async def test_a_slow_small_body_is_read_whole_if_it_never_pauses_for_long() -> None:
    """Ten pieces 0.1 s apart take longer than the idle bound: slow, not stalled."""
    request = _request(*_pieces_of(b"x" * 100, 10), pause=0.1)
    assert await _read_whole(request, 1024, 0.3) == b"x" * 100


@pytest.mark.parametrize("idle_seconds", [None, 1.0])
async def test_a_small_body_the_client_gives_up_on_is_499_not_an_error(idle_seconds: float | None) -> None:
    request = _request({"type": "http.request", "body": b"ab", "more_body": True})
    with pytest.raises(ClientClosedRequest):
        await _read_whole(request, 1024, idle_seconds)


async def test_a_small_body_that_stops_arriving_is_408() -> None:
    request = _request({"type": "http.request", "body": b"ab", "more_body": True}, then_wait=True)
    with pytest.raises(RequestTimeout):
        await _read_whole(request, 1024, 0.2)


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
