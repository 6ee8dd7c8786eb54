"""gateway app: the only public component. HTTPS only; forwards to api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.responses import Response

from carevault_common.app import add_readiness_check, build_app, json_response, lifespan_marker
from carevault_common.clients import ServiceClient
from carevault_common.mtls import client_context_for
from carevault_common.proxy import forward, forwarded_headers
from carevault_common.replay import LocalReplayCache, RedisReplayCache, ReplayCache
from carevault_gateway.auth.tokens import TokenGate
from carevault_gateway.config import Settings
from carevault_gateway.headers import SecurityHeadersMiddleware
from carevault_gateway.limits.ratelimit import TooManyRequests, build_rate_limiter

PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _is_binary(path: str) -> bool:
    return path == "fhir/Binary" or path.startswith("fhir/Binary/")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api = ServiceClient(
            "api",
            settings.api_url,
            client_context_for(settings),
            read_timeout_seconds=settings.upstream_idle_seconds,
            read_buffer_bytes=1024 * 1024,
        )
        await api.start()
        limiter = build_rate_limiter(settings.redis_url, settings.rate_limit_per_second, settings.rate_limit_burst)
        app.state.api, app.state.limiter = api, limiter
        replay: ReplayCache = RedisReplayCache(settings.redis_url, "carevault:gw:dpop") if settings.redis_url else LocalReplayCache()
        app.state.tokens = TokenGate(api, replay, settings.public_url)
        add_readiness_check(app, "api", api.is_ready)
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await api.close()
            await limiter.close()
            await replay.close()

    app = build_app("gateway", lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.add_middleware(SecurityHeadersMiddleware, environment=settings.environment.value, header_name=settings.environment_header)

    @app.get("/healthz")
    async def public_health(request: Request) -> Response:
        """Says only whether the mesh behind the gateway is ready."""
        ready = await request.app.state.api.is_ready()
        return json_response({"status": "ready" if ready else "unavailable"}, status_code=200 if ready else 503)

    @app.api_route("/{path:path}", methods=PROXIED_METHODS, include_in_schema=False)
    async def proxy(request: Request, path: str) -> Response:
        client = request.client.host if request.client else "unknown"
        if not await request.app.state.limiter.allow(client):
            raise TooManyRequests("Slow down.", headers={"retry-after": "1"})
        await request.app.state.tokens.check(request)
        headers = forwarded_headers(request)
        headers["x-forwarded-for"] = client
        headers["x-forwarded-proto"] = "https"
        headers["x-forwarded-host"] = request.headers.get("host", "")
        limit = settings.max_binary_body_bytes if _is_binary(path) else settings.max_body_bytes
        return await forward(request, request.app.state.api, limit, headers, client_idle_seconds=settings.client_idle_seconds)

    return app
