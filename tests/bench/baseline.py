"""The baseline: one FastAPI app that stores the same payloads in plaintext.

What carevault's figures are divided by. No TLS, no auth, no validation, no
encryption, no hops: a POST is one asyncpg INSERT of the raw body, a GET one
SELECT by primary key, a bundle one executemany in a transaction. Served like
each mesh service: uvicorn, uvloop, httptools, one worker, loopback only.

Run by the harness as ``python -m uvicorn tests.bench.baseline:app``, with the
database in ``CVBENCH_BASELINE_DSN``.

With ``CVBENCH_RELAY_TO`` set, the same app is an empty hop instead: GETs are sent
on to that URL over mTLS (aiohttp, as the mesh's clients; certificate and CA in
``CVBENCH_CLIENT_CERT``, ``CVBENCH_CLIENT_KEY``, ``CVBENCH_CA``) and the answer is
relayed. Three such processes in a row (``stack.floor_chain``) are the floor of the
architecture: the same SELECT behind the mesh's hops, with none of its work; and,
with ``/stream``, the same bytes a file transfer moves, streamed through the hops as
the mesh's proxy streams them (regrouped in pieces of ``STREAM_PIECE``), neither
encrypted nor stored.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from carevault_common.clients import STREAM_PIECE, coalesce
from carevault_common.proxy import RelayedBody

DSN_ENV = "CVBENCH_BASELINE_DSN"
RELAY_ENV = "CVBENCH_RELAY_TO"
POOL_SIZE = 8  # as a mesh service's SQLAlchemy pool: 8 connections, all kept open
SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    id uuid PRIMARY KEY,
    resource_type text NOT NULL,
    body bytea NOT NULL
)
"""
INSERT = "INSERT INTO resources (id, resource_type, body) VALUES ($1, $2, $3)"
SELECT = "SELECT body FROM resources WHERE id = $1 AND resource_type = $2"
JSON = "application/json"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    relay_to = os.environ.get(RELAY_ENV, "")
    app.state.relay_to = relay_to
    if relay_to:
        import ssl

        import aiohttp

        context = ssl.create_default_context(cafile=os.environ["CVBENCH_CA"])
        context.load_cert_chain(os.environ["CVBENCH_CLIENT_CERT"], os.environ["CVBENCH_CLIENT_KEY"])
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=100, keepalive_timeout=20)) as session:
            app.state.session = session
            yield
        return
    pool = await asyncpg.create_pool(os.environ[DSN_ENV], min_size=POOL_SIZE, max_size=POOL_SIZE)
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


async def _relayed(request: Request, path: str) -> Response:
    async with request.app.state.session.get(request.app.state.relay_to + path) as upstream:
        body = await upstream.read()
        return Response(body, status_code=upstream.status, media_type=upstream.headers.get("content-type"))


@app.get("/healthz")
async def healthz(request: Request) -> Response:
    if request.app.state.relay_to:
        return await _relayed(request, "/healthz")
    await request.app.state.pool.fetchval("SELECT 1")
    return Response(b'{"status":"ok"}', media_type=JSON)


@app.post("/r/{resource_type}")
async def create(resource_type: str, request: Request) -> Response:
    body = await request.body()
    resource_id = uuid.uuid4()
    await request.app.state.pool.execute(INSERT, resource_id, resource_type, body)
    return Response(
        orjson.dumps({"id": str(resource_id)}), status_code=201, media_type=JSON, headers={"location": f"/r/{resource_type}/{resource_id}"}
    )


@app.get("/r/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: uuid.UUID, request: Request) -> Response:
    if request.app.state.relay_to:
        return await _relayed(request, request.url.path)
    body = await request.app.state.pool.fetchval(SELECT, resource_id, resource_type)
    if body is None:
        return Response(b'{"status":404}', status_code=404, media_type=JSON)
    return Response(body, media_type=JSON)


@app.post("/bundle")
async def bundle(request: Request) -> Response:
    """Every entry's resource stored in one transaction (the plaintext counterpart of a
    FHIR transaction bundle, without reference rewriting or conditional logic)."""
    parsed: dict[str, Any] = orjson.loads(await request.body())
    rows = [(uuid.uuid4(), e["resource"]["resourceType"], orjson.dumps(e["resource"])) for e in parsed.get("entry", [])]
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await conn.executemany(INSERT, rows)
    return Response(orjson.dumps({"stored": len(rows)}), media_type=JSON)


@app.post("/stream")
async def stream_in(request: Request) -> Response:
    """Relay mode: the body streamed on to the next hop. Last hop: counted and dropped."""
    if request.app.state.relay_to:
        headers = {"content-length": request.headers["content-length"]} if "content-length" in request.headers else {}
        async with request.app.state.session.post(
            request.app.state.relay_to + "/stream", data=coalesce(request.stream()), headers=headers
        ) as upstream:
            return Response(await upstream.read(), status_code=upstream.status, media_type=JSON)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
    return Response(orjson.dumps({"received": received}), media_type=JSON)


_PIECE = bytes(STREAM_PIECE)


@app.get("/stream/{size}")
async def stream_out(size: int, request: Request) -> Response:
    """``size`` bytes streamed back (zeros from the last hop; relayed by the others)."""
    headers = {"content-length": str(size)}
    if request.app.state.relay_to:
        upstream = await request.app.state.session.get(f"{request.app.state.relay_to}/stream/{size}")
        return StreamingResponse(RelayedBody(upstream), headers=headers, media_type="application/octet-stream")

    async def zeros() -> AsyncIterator[bytes]:
        for offset in range(0, size, STREAM_PIECE):
            yield _PIECE[: min(STREAM_PIECE, size - offset)]

    return StreamingResponse(zeros(), headers=headers, media_type="application/octet-stream")
