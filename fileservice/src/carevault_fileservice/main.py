"""fileservice app: accepts api only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from carevault_common.app import add_readiness_check, build_app, lifespan_marker, mesh_router
from carevault_common.db import create_engine, database_ready, session_factory
from carevault_fileservice.config import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size, max_overflow=settings.database_max_overflow)
        settings.blob_dir.mkdir(parents=True, exist_ok=True)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        add_readiness_check(app, "database", lambda: database_ready(engine))
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await engine.dispose()

    app = build_app("fileservice", lifespan, openapi_url=None)
    app.state.settings = settings
    app.include_router(mesh_router(app, "api"))
    return app
