"""One pooled mTLS client per peer service, on aiohttp.

aiohttp, not httpx's default transport: measured on this platform's hot path it
passes several times more requests per second. Every call carries the trace
context and request id, has timeouts, and maps transport failures to a 503
problem. Only idempotent calls are retried. A body relayed from the caller's own
client (:class:`ForwardedBody`) that fails is the client's failure, not the peer's.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from starlette.requests import ClientDisconnect

from carevault_common.errors import ClientClosedRequest, PayloadTooLarge, RequestTimeout, ServiceUnavailable
from carevault_common.telemetry import outgoing_headers

logger = logging.getLogger("carevault.clients")

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


# Streamed bodies are passed on in pieces of about this size: the server hands the
# body over in socket-read pieces (often 16-64 KiB); fewer, larger writes downstream
# cost less per byte. Memory per request stays bounded by it.
STREAM_PIECE = 256 * 1024


async def coalesce(chunks: AsyncIterator[bytes], piece: int = STREAM_PIECE) -> AsyncIterator[bytes]:
    """Regroup a stream into pieces of at least ``piece`` bytes (the last may be shorter);
    each byte is copied at most once (a large chunk passes as it is)."""
    pending: list[bytes] = []
    size = 0
    async for chunk in chunks:
        if not pending and len(chunk) >= piece:
            yield chunk
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= piece:
            yield b"".join(pending)
            pending.clear()
            size = 0
    if pending:
        yield b"".join(pending)


class ForwardedBody:
    """A request body streamed from the caller's own client on to a peer: regrouped,
    limited to ``max_bytes`` (413 beyond), hashed on the way when a ``digest`` is given,
    and, with ``idle_seconds``, given up (408) when the client sends nothing for that long.

    If it fails (the client went away, sent too much), aiohttp tells only of a broken
    connection to the peer; this keeps what stopped it, and the peer's client raises
    that instead of "peer unavailable" (a 503 blaming a healthy peer)."""

    def __init__(
        self,
        source: AsyncIterable[bytes],
        max_bytes: int,
        *,
        digest: Any = None,
        limit_message: str | None = None,
        idle_seconds: float | None = None,
    ) -> None:
        self.source, self.max_bytes, self.digest = source, max_bytes, digest
        self.limit_message = limit_message or "The request body exceeds the size limit."
        self.idle_seconds = idle_seconds
        self.error: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        try:
            async for chunk in coalesce(self._arriving()):
                size += len(chunk)
                if size > self.max_bytes:
                    raise PayloadTooLarge(self.limit_message)
                if self.digest is not None:
                    self.digest.update(chunk)
                yield chunk
        except ClientDisconnect:
            self.error = ClientClosedRequest()
            raise self.error from None
        except BaseException as exc:
            self.error = exc
            raise

    async def _arriving(self) -> AsyncIterator[bytes]:
        """The source's pieces, each awaited for at most ``idle_seconds``: a client that
        stalls mid-body would otherwise hold its connection, and every peer connection
        its body streams to, for as long as it likes. Time the peer takes to accept a
        piece is not counted (that is not the client's doing)."""
        pieces = aiter(self.source)
        if self.idle_seconds is None:
            async for piece in pieces:
                yield piece
            return
        while True:
            waiting = asyncio.timeout(self.idle_seconds)
            try:
                async with waiting:
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not waiting.expired():
                    raise
                raise RequestTimeout(f"No request body bytes arrived for {self.idle_seconds:g} s.") from None
            yield piece


@dataclass(frozen=True, slots=True)
class ServiceResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ServiceClient:
    """A typed-client base: subclasses add one method per peer endpoint."""

    def __init__(
        self,
        peer: str,
        base_url: str,
        ssl_context: ssl.SSLContext,
        *,
        timeout_seconds: float = 15.0,
        connect_timeout_seconds: float = 3.0,
        max_connections: int = 100,
        read_timeout_seconds: float | None = None,
        read_buffer_bytes: int = 64 * 1024,
    ) -> None:
        """``timeout_seconds`` bounds a whole call. With ``read_timeout_seconds`` a call
        has no overall bound, only one per read of the socket: for peers that move
        files, where a large transfer lasts as long as it must but a stalled one fails."""
        self.peer = peer
        self.base_url = base_url.rstrip("/")
        self._ssl = ssl_context
        if read_timeout_seconds is None:
            self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=connect_timeout_seconds)
        else:
            self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_seconds, sock_read=read_timeout_seconds)
        self._max_connections = max_connections
        # How much of a response aiohttp buffers before it stops reading: peers that
        # relay files get more, so each relayed chunk is bigger (fewer, larger writes).
        self._read_bufsize = read_buffer_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Redirects are never followed: a peer's answer is relayed as it is.
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_connections, keepalive_timeout=20, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            read_bufsize=self._read_bufsize,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"client for {self.peer} used before start()")
        return self._session

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        merged = outgoing_headers()
        if headers:
            merged.update(headers)
        return merged

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
    ) -> ServiceResponse:
        body = orjson.dumps(json) if json is not None else content
        sent_headers = self._headers(headers)
        if json is not None:
            sent_headers.setdefault("content-type", "application/json")
        attempts = 2 if method.upper() in _IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                async with self.session.request(
                    method, self.base_url + path, data=body, headers=sent_headers, params=params, allow_redirects=False
                ) as resp:
                    return ServiceResponse(resp.status, resp.headers, await resp.read())
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if attempt + 1 < attempts and isinstance(exc, aiohttp.ServerDisconnectedError):
                    continue  # a pooled connection the peer had closed: safe to retry an idempotent call
                logger.warning("peer unavailable", extra={"peer": self.peer, "error_type": type(exc).__name__})
                raise ServiceUnavailable(f"The {self.peer} service is unavailable.") from exc
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        body: AsyncIterable[bytes] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A call whose request and/or response body is streamed."""
        try:
            async with self.session.request(
                method, self.base_url + path, data=body, headers=self._headers(headers), params=params, allow_redirects=False
            ) as resp:
                yield resp
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise self._failure(exc, body) from exc

    async def open(
        self,
        method: str,
        path: str,
        *,
        body: AsyncIterable[bytes] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        timeout_seconds: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Start a call and return the response with its body unread; the caller
        must ``release()`` it (used by the proxy, whose response outlives the call).
        ``timeout_seconds`` replaces the client's total timeout for this call."""
        timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=self._timeout.connect) if timeout_seconds else None
        try:
            return await self.session.request(
                method,
                self.base_url + path,
                data=body,
                headers=self._headers(headers),
                params=params,
                allow_redirects=False,
                timeout=timeout or self._timeout,
            )
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise self._failure(exc, body) from exc

    def _failure(self, exc: BaseException, body: object) -> BaseException:
        """What a transport failure of a streamed call means: the forwarded body's own
        failure if it stopped (the exception it raised), else an unavailable peer."""
        if isinstance(body, ForwardedBody) and body.error is not None:
            return body.error
        logger.warning("peer unavailable", extra={"peer": self.peer, "error_type": type(exc).__name__})
        return ServiceUnavailable(f"The {self.peer} service is unavailable.")

    async def is_ready(self) -> bool:
        """Readiness of the peer as seen over mTLS (its /_mesh/ready endpoint)."""
        try:
            resp = await self.request("GET", "/_mesh/ready")
        except ServiceUnavailable:
            return False
        return resp.ok
