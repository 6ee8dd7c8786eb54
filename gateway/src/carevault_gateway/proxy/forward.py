"""The streaming reverse proxy to api.

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


def forwarded_headers(request: Request) -> dict[str, str]:
    headers = {
        k: v
        for k, v in request.headers.items()
        if k not in HOP_BY_HOP and not k.startswith(INTERNAL_PREFIX) and k not in ("traceparent", "tracestate", "x-request-id")
    }
    if request.client is not None:
        headers["x-forwarded-for"] = request.client.host
    headers["x-forwarded-proto"] = "https"
    headers["x-forwarded-host"] = request.headers.get("host", "")
    return headers


async def _limited_stream(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge("The request body exceeds the size limit.")
        yield chunk


def _response_headers(upstream_headers: object) -> dict[str, str]:
    items = upstream_headers.items()  # type: ignore[attr-defined]
    return {k: v for k, v in items if k.lower() not in HOP_BY_HOP}


async def forward(request: Request, api: ServiceClient, max_body_bytes: int) -> Response:
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
    upstream = await api.open(
        request.method, request.url.path, body=body, headers=forwarded_headers(request), params=list(request.query_params.multi_items())
    )
    headers = _response_headers(upstream.headers)
    length = upstream.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT:
        try:
            content = await upstream.read()
        finally:
            upstream.release()
        return Response(content, status_code=upstream.status, headers=headers)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    return StreamingResponse(relay(), status_code=upstream.status, headers=headers)
