"""Forward a request to a peer service and relay its answer (gateway → api,
api → records/fileservice).

Small bodies (the common case: FHIR JSON) are read whole, which is cheaper
than chunked streaming; large ones (files) stream both ways in bounded memory
and are never written to disk. ``x-carevault-*`` headers are the mesh's own: a
client's are dropped on the way in, a peer's are never relayed on the way out.

:func:`ask` stops before relaying, for a caller that must act on the answer
first (api stores the audit event of a read before any byte of it leaves).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import aiohttp
from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from carevault_common.clients import ForwardedBody, ServiceClient
from carevault_common.errors import ClientClosedRequest, PayloadTooLarge, ProblemError

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


def _response_headers(upstream_headers: object) -> dict[str, str]:
    items = upstream_headers.items()  # type: ignore[attr-defined]
    return {k: v for k, v in items if k.lower() not in HOP_BY_HOP and not k.lower().startswith(INTERNAL_PREFIX)}


def _internal_headers(upstream_headers: object) -> dict[str, str]:
    items = upstream_headers.items()  # type: ignore[attr-defined]
    return {k.lower(): v for k, v in items if k.lower().startswith(INTERNAL_PREFIX)}


class RelayedBody:
    """A peer's streamed body, piece by piece, for a StreamingResponse; the upstream
    connection is released at the end, whatever the end. An upstream that stops early
    (a peer aborting a transfer it cannot finish, e.g. a file segment that failed
    authentication) raises here, after the headers: the server then aborts this
    connection too, so a failed transfer is never relayed as a complete one.

    A response dropped before its first byte is sent (its audit event could not be
    stored) must be closed with :meth:`aclose`: an async generator's ``finally`` never
    runs if the generator never started, which is why this is a class."""

    def __init__(self, upstream: aiohttp.ClientResponse) -> None:
        self._upstream = upstream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream.content.iter_any():
                yield chunk
        finally:
            self._upstream.release()

    async def aclose(self) -> None:
        self._upstream.release()


@dataclass
class Answer:
    """A peer's answer that has not been sent on yet: status and headers known,
    the body read if it is small, else still to stream. Either :meth:`response`
    (relay it) or :meth:`discard` (drop it) must be called.

    ``internal`` holds the ``x-carevault-*`` headers the peer addressed to its
    caller; they are never relayed to the client.
    """

    status: int
    headers: dict[str, str]
    internal: dict[str, str]
    body: bytes | None
    _upstream: aiohttp.ClientResponse | None

    def response(self) -> Response:
        if self.body is not None:
            return Response(self.body, status_code=self.status, headers=self.headers)
        upstream = self._upstream
        assert upstream is not None
        headers = dict(self.headers)
        length = upstream.headers.get("content-length")
        if length is not None and length.isascii() and length.isdigit():
            # The bytes are relayed unchanged (no decompression): the length still holds,
            # and keeps a short transfer detectable by the client.
            headers["content-length"] = length
        return StreamingResponse(RelayedBody(upstream), status_code=self.status, headers=headers)

    def discard(self) -> None:
        if self._upstream is not None:
            self._upstream.release()
            self._upstream = None


async def ask(
    request: Request,
    peer: ServiceClient,
    max_body_bytes: int,
    headers: dict[str, str],
    path: str | None = None,
    *,
    timeout_seconds: float | None = None,
    client_idle_seconds: float | None = None,
) -> Answer:
    """Send the client's request on to ``peer`` and return its answer unsent.

    ``client_idle_seconds`` (the gateway's, facing the public): the client may not pause
    longer while sending the body; else 408."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise ProblemError("Invalid Content-Length.", code="invalid-content-length")
        if int(declared) > max_body_bytes:
            raise PayloadTooLarge("The request body exceeds the size limit.")
    body: bytes | AsyncIterable[bytes] | None
    if declared is not None and int(declared) <= BUFFER_LIMIT:
        body = await _read_whole(request, max_body_bytes, client_idle_seconds)
    elif request.method in ("GET", "HEAD", "DELETE", "OPTIONS") and declared is None:
        body = None
    else:
        body = ForwardedBody(request.stream(), max_body_bytes, idle_seconds=client_idle_seconds)
        if declared is not None:
            # Passed on as declared (the server delivers exactly that many bytes, or the
            # stream fails): the peer gets a plain body instead of chunked framing.
            headers = {**headers, "content-length": declared}
    upstream = await peer.open(
        request.method,
        path or request.url.path,
        body=body,
        headers=headers,
        params=list(request.query_params.multi_items()),
        timeout_seconds=timeout_seconds,
    )
    response_headers = _response_headers(upstream.headers)
    internal = _internal_headers(upstream.headers)
    length = upstream.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) <= BUFFER_LIMIT:
        try:
            content = await upstream.read()
        finally:
            upstream.release()
        return Answer(upstream.status, response_headers, internal, content, None)
    return Answer(upstream.status, response_headers, internal, None, upstream)


async def _read_whole(request: Request, max_body_bytes: int, idle_seconds: float | None) -> bytes:
    if idle_seconds is None:
        try:
            return await request.body()
        except ClientDisconnect:
            raise ClientClosedRequest() from None
    # Facing the public: each piece must come within idle_seconds, as a streamed body's
    # must (a phone on a slow link is slow, not stalled). Nothing reads this body again.
    return b"".join([piece async for piece in ForwardedBody(request.stream(), max_body_bytes, idle_seconds=idle_seconds)])


async def forward(
    request: Request,
    peer: ServiceClient,
    max_body_bytes: int,
    headers: dict[str, str],
    path: str | None = None,
    *,
    timeout_seconds: float | None = None,
    client_idle_seconds: float | None = None,
) -> Response:
    answer = await ask(
        request, peer, max_body_bytes, headers, path, timeout_seconds=timeout_seconds, client_idle_seconds=client_idle_seconds
    )
    return answer.response()
