"""Client keys from a JWKS URL: limits, caching, refetch on a new key id, stale
keys when the server fails, and the addresses api refuses to fetch from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from joserfc.jwk import ECKey

from carevault_api.oauth.jwks_fetch import JwksFetcher, JwksUnavailable, check_jwks_uri


class Server:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status, self.extra, self.hits, self.body = 200, b"", 0, b""
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if request.path == "/redirect":
            raise web.HTTPFound("/jwks")
        body = self.body or orjson.dumps({"keys": self.keys}) + self.extra
        return web.Response(status=self.status, body=body, content_type="application/json", headers={"cache-control": "max-age=600"})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    app = web.Application()
    app.router.add_get("/{tail:.*}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def _key(kid: str) -> dict[str, Any]:
    return ECKey.generate_key("P-384", parameters={"kid": kid}).as_dict(private=False)


async def test_fetched_once_then_cached_then_refetched_for_a_new_key(server: Server) -> None:
    fetcher = JwksFetcher(private_networks=True, refetch_interval=0)
    server.keys = [_key("one")]
    try:
        assert [k.kid for k in (await fetcher.keys(server.url + "/jwks", "one")).keys] == ["one"]
        await fetcher.keys(server.url + "/jwks", "one")
        assert server.hits == 1
        server.keys = [_key("two")]
        assert [k.kid for k in (await fetcher.keys(server.url + "/jwks", "two")).keys] == ["two"]
        assert server.hits == 2
    finally:
        await fetcher.close()


async def test_unknown_key_ids_do_not_hammer_the_server(server: Server) -> None:
    fetcher = JwksFetcher(private_networks=True, refetch_interval=30)
    server.keys = [_key("one")]
    try:
        await fetcher.keys(server.url + "/jwks", "one")
        for _ in range(5):
            await fetcher.keys(server.url + "/jwks", "garbage")
        assert server.hits == 1
    finally:
        await fetcher.close()


async def test_the_last_good_keys_are_used_when_the_server_fails(server: Server) -> None:
    fetcher = JwksFetcher(private_networks=True, refetch_interval=0)
    server.keys = [_key("one")]
    try:
        await fetcher.keys(server.url + "/jwks", "one")
        server.status = 500
        assert [k.kid for k in (await fetcher.keys(server.url + "/jwks", "other")).keys] == ["one"]
    finally:
        await fetcher.close()


@pytest.mark.parametrize("problem", ["status", "private-key", "too-large", "not-json", "redirect"])
async def test_refused_answers(server: Server, problem: str) -> None:
    fetcher = JwksFetcher(private_networks=True)
    server.keys = [_key("one")]
    path = "/jwks"
    if problem == "status":
        server.status = 404
    elif problem == "private-key":
        server.keys = [ECKey.generate_key("P-384").as_dict(private=True)]
    elif problem == "too-large":
        server.body = b'{"keys": [], "pad": "' + b"x" * 70_000 + b'"}'
    elif problem == "not-json":
        server.body = b"<html>"
    else:
        path = "/redirect"
    try:
        with pytest.raises(JwksUnavailable):
            await fetcher.keys(server.url + path, "one")
    finally:
        await fetcher.close()


async def test_private_addresses_are_refused_without_the_dev_setting(server: Server) -> None:
    fetcher = JwksFetcher()
    port = server.url.rsplit(":", 1)[1]
    try:
        for url in (server.url + "/jwks", f"https://127.0.0.1:{port}/jwks", f"https://localhost:{port}/jwks"):
            with pytest.raises(JwksUnavailable):
                await fetcher.keys(url, "one")
        assert server.hits == 0
    finally:
        await fetcher.close()


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("https://clinic.example/.well-known/jwks.json", True),
        ("http://clinic.example/jwks", False),
        ("https://user:pw@clinic.example/jwks", False),
        ("https://10.0.0.5/jwks", False),
        ("https://169.254.169.254/latest", False),
        ("https://[::1]/jwks", False),
        ("https://clinic.example/jwks#x", False),
        ("ftp://clinic.example/jwks", False),
    ],
)
def test_registration_rules(uri: str, ok: bool) -> None:
    assert (check_jwks_uri(uri) is None) == ok
