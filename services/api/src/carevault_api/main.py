"""api app: accepts the gateway only; calls records, fileservice and keyservice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

# -- sign-in (issue 4) --------------------------------------------------------------------
from carevault_api.accounts.router import router as admin_router
from carevault_api.auth.setup import close_sign_in, start_sign_in
from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.clients.keyservice import KeyserviceClient
from carevault_api.clients.records import RecordsClient
from carevault_api.config import Settings
from carevault_api.consents.router import router as consent_router
from carevault_api.fhir.router import router as fhir_router
from carevault_api.oauth.router import router as oauth_router
from carevault_common.app import add_readiness_check, build_app, lifespan_marker, mesh_router
from carevault_common.db import create_engine, database_ready, session_factory
from carevault_common.mtls import client_context_for, require_callers


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size, max_overflow=settings.database_max_overflow)
        context = client_context_for(settings)
        records = RecordsClient("records", settings.records_url, context)
        files = FileserviceClient("fileservice", settings.fileservice_url, context)
        keys = KeyserviceClient("keyservice", settings.keyservice_url, context)
        for client in (records, files, keys):
            await client.start()
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.records, app.state.files, app.state.keys = records, files, keys
        await start_sign_in(app, settings)
        add_readiness_check(app, "database", lambda: database_ready(engine))
        add_readiness_check(app, "records", records.is_ready)
        add_readiness_check(app, "fileservice", files.is_ready)
        add_readiness_check(app, "keyservice", keys.is_ready)
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await close_sign_in(app)
            for client in (records, files, keys):
                await client.close()
            await engine.dispose()

    app = build_app("api", lifespan)
    app.state.settings = settings
    app.include_router(mesh_router(app, "gateway"))
    from_gateway = [Depends(require_callers("gateway"))]
    # Sign-in, administration and consents; /fhir/Consent and the SMART configuration
    # come before the FHIR catch-all, which forwards everything else to records.
    app.include_router(oauth_router, dependencies=from_gateway)
    app.include_router(admin_router, dependencies=from_gateway)
    app.include_router(consent_router, dependencies=from_gateway)
    app.include_router(fhir_router, dependencies=from_gateway)
    return app
