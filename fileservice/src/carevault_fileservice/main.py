"""fileservice app: accepts api only; stores ciphertext blobs under opaque ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from carevault_common.app import add_readiness_check, attach_database, build_app, lifespan_marker, mesh_router
from carevault_fileservice.blobs.router import router as blobs_router
from carevault_fileservice.blobs.service import BlobService
from carevault_fileservice.config import Settings
from carevault_fileservice.storage import BlobStore, build_store


def create_app(settings: Settings, store: BlobStore | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = attach_database(app, settings)
        blob_store = store or build_store(settings)
        await blob_store.start()
        app.state.blobs = BlobService(blob_store, max_bytes=settings.max_blob_bytes, segment_size=settings.segment_size)
        add_readiness_check(app, "blob-store", blob_store.ready)
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await blob_store.close()
            await engine.dispose()

    app = build_app("fileservice", lifespan, openapi_url=None)
    app.state.settings = settings
    app.include_router(mesh_router(app, "api"))
    app.include_router(blobs_router)
    return app
