"""records app: accepts api only; calls keyservice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from carevault_common.app import add_readiness_check, attach_database, build_app, lifespan_marker, mesh_router
from carevault_common.db import session_factory
from carevault_common.errors import FHIR_MEDIA_TYPE
from carevault_common.mtls import client_context_for
from carevault_records.binaries.router import router as binaries_router
from carevault_records.binaries.service import BinaryFiles
from carevault_records.clients.keyservice import KeyserviceClient
from carevault_records.config import Settings
from carevault_records.erasure.router import router as erasure_router
from carevault_records.export.router import router as export_router
from carevault_records.fhir.outcome import FhirError
from carevault_records.keys.router import internal_router as patients_router
from carevault_records.keys.router import router as keys_router
from carevault_records.keys.service import PatientKeys
from carevault_records.patient_header import PatientHeaderMiddleware
from carevault_records.resources.router import router as resources_router
from carevault_records.resources.service import ResourceService
from carevault_records.transactions.router import router as transactions_router
from carevault_records.transactions.service import BundleService


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = attach_database(app, settings)
        keyservice = KeyserviceClient("keyservice", settings.keyservice_url, client_context_for(settings))
        keyservice.keyset_ttl_seconds = settings.escrow_keyset_ttl_seconds
        await keyservice.start()
        app.state.read_sessions = session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
        app.state.keyservice = keyservice
        app.state.resources = ResourceService(PatientKeys(keyservice))
        app.state.bundles = BundleService(app.state.resources)
        app.state.binaries = BinaryFiles(app.state.resources)
        add_readiness_check(app, "keyservice", keyservice.is_ready)
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await keyservice.close()
            await engine.dispose()

    app = build_app("records", lifespan, openapi_url=None)
    app.add_middleware(PatientHeaderMiddleware)
    app.state.settings = settings
    app.include_router(mesh_router(app, "api"))
    app.include_router(transactions_router)  # before the generic routes: /fhir/metadata is not a type
    app.include_router(keys_router)  # before the generic routes: $rotate-key is an operation
    app.include_router(export_router)  # likewise $everything
    app.include_router(patients_router)
    app.include_router(erasure_router)
    app.include_router(binaries_router)
    app.include_router(resources_router)
    app.add_exception_handler(FhirError, _fhir_error)
    return app


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return Response(orjson.dumps(exc.outcome), status_code=exc.status, media_type=FHIR_MEDIA_TYPE)
