"""Forward a request to a peer service and relay its answer (gateway → api,
api → records/fileservice).

Small bodies (the common case: FHIR JSON) are read whole, which is cheaper
than chunked streaming; large ones (files) stream both ways in bounded memory
and are never written to disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from carevault_common.clients import ServiceClient
from carevault_common.errors import PayloadTooLarge, ProblemError

BUFFER_LIMIT = 1024 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Headers only the mesh may set; a client sending them is ignored.
INTERNAL_PREFIX = "x-carevault-"


def forwarded_headers(request: Request, allowed: frozenset[str] | None = None) -> dict[str, str]:
    """The client's end-to-end headers, minus what only the mesh may set
    (and, with ``allowed``, only those named)."""
    return {
        k: v
        for k, v in request.headers.items()
        if k not in HOP_BY_HOP
        and not k.startswith(INTERNAL_PREFIX)
        and k not in ("traceparent", "tracestate", "x-request-id")
        and (allowed is None or k in allowed)
    }


# Streamed bodies are passed on in pieces of about this size: the server hands the
# body over in socket-read pieces (often 16-64 KiB); fewer, larger writes downstream
# cost less per byte. Memory per request stays bounded by it.
STREAM_PIECE = 256 * 1024


async def coalesce(chunks: AsyncIterator[bytes], piece: int = STREAM_PIECE) -> AsyncIterator[bytes]:
    """Regroup a stream into pieces of at least ``piece`` bytes (the last may be shorter)."""
    pending = bytearray()
    async for chunk in chunks:
        if not pending and len(chunk) >= piece:
            yield chunk
            continue
        pending += chunk
        if len(pending) >= piece:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


async def _limited_stream(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in coalesce(request.stream()):
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge("The request body exceeds the size limit.")
        yield chunk


def _response_headers(upstream_headers: object) -> dict[str, str]:
    items = upstream_headers.items()  # type: ignore[attr-defined]
    return {k: v for k, v in items if k.lower() not in HOP_BY_HOP}


async def forward(request: Request, peer: ServiceClient, max_body_bytes: int, headers: dict[str, str], path: str | None = None) -> Response:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError("Invalid Content-Length.", code="invalid-content-length")
        if int(declared) > max_body_bytes:
            raise PayloadTooLarge("The request body exceeds the size limit.")
    body: bytes | AsyncIterator[bytes] | None
    if declared is not None and int(declared) <= BUFFER_LIMIT:
        body = await request.body()
    elif request.method in ("GET", "HEAD", "DELETE", "OPTIONS") and declared is None:
        body = None
    else:
        body = _limited_stream(request, max_body_bytes)
    upstream = await peer.open(
        request.method, path or request.url.path, body=body, headers=headers, params=list(request.query_params.multi_items())
    )
    response_headers = _response_headers(upstream.headers)
    length = upstream.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT:
        try:
            content = await upstream.read()
        finally:
            upstream.release()
        return Response(content, status_code=upstream.status, headers=response_headers)

    async def relay() -> AsyncIterator[bytes]:
        # An upstream that stops early (a peer aborting a transfer it cannot finish)
        # raises here, after the headers: the server then aborts this connection too,
        # so a failed transfer is never relayed as a complete one.
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    if length is not None and length.isdigit():
        # The bytes are relayed unchanged (no decompression): the length still holds,
        # and keeps a short transfer detectable by the client.
        response_headers["content-length"] = length
    return StreamingResponse(relay(), status_code=upstream.status, headers=response_headers)
