"""api app: accepts the gateway only; calls records, fileservice and keyservice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from carevault_api.accounts.router import router as admin_router
from carevault_api.audit.router import router as audit_router
from carevault_api.audit.setup import build_audit_trail, final_checkpoint
from carevault_api.auth.setup import close_sign_in, start_sign_in
from carevault_api.binaries.router import router as binaries_router
from carevault_api.binaries.service import BinaryService
from carevault_api.binaries.sweep import OrphanSweeper
from carevault_api.break_glass.documents import reseal_keys as reseal_document_keys
from carevault_api.break_glass.router import router as break_glass_router
from carevault_api.break_glass.service import BreakGlass, BreakGlassSettings
from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.clients.keyservice import KeyserviceClient
from carevault_api.clients.records import RecordsClient
from carevault_api.config import Settings
from carevault_api.consents.router import router as consent_router
from carevault_api.erasure.router import router as erasure_router
from carevault_api.escrow_admin.router import router as escrow_admin_router
from carevault_api.escrow_admin.service import EscrowAdmin
from carevault_api.fhir.router import router as fhir_router
from carevault_api.oauth.router import router as oauth_router
from carevault_api.webauthn.router import router as webauthn_router
from carevault_common.app import add_readiness_check, attach_database, build_app, lifespan_marker, mesh_router
from carevault_common.mtls import client_context_for, require_callers

MIB = 1024 * 1024


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = attach_database(app, settings)
        context = client_context_for(settings)
        # A transaction of thousands of entries is one call: allow it time.
        records = RecordsClient("records", settings.records_url, context, timeout_seconds=120)
        # File transfers last as long as they must; a stalled one fails.
        # The default 64 KiB read buffer: a 1 MiB one saved no measurable CPU on
        # downloads and cost ~10 MiB of resident memory (tests/bench, files-1gib).
        files = FileserviceClient(
            "fileservice", settings.fileservice_url, context, read_timeout_seconds=settings.file_transfer_idle_seconds
        )
        keys = KeyserviceClient("keyservice", settings.keyservice_url, context)
        for client in (records, files, keys):
            await client.start()
        app.state.records, app.state.files, app.state.keys = records, files, keys
        app.state.binaries = BinaryService(
            records,
            files,
            max_bytes=settings.max_binary_bytes,
            json_limit=settings.binary_json_limit,
            upload_max_seconds=settings.binary_upload_max_seconds,
        )
        sweeper = OrphanSweeper(
            records, files, older_than_seconds=settings.binary_upload_max_seconds + settings.binary_orphan_grace_seconds
        )
        app.state.audit = build_audit_trail(settings, app.state.sessions)
        maintenance = asyncio.create_task(
            app.state.audit.maintain(settings.audit_checkpoint_interval_seconds, settings.audit_prune_interval_seconds)
        )
        await start_sign_in(app, settings)
        app.state.break_glass = BreakGlass(
            app.state.sessions,
            keys,
            files,
            app.state.secrets,
            app.state.oauth,
            app.state.audit,
            BreakGlassSettings(settings.break_glass_token_ttl_seconds, settings.break_glass_document_max_bytes),
        )
        app.state.escrow_admin = EscrowAdmin(keys, settings.escrow_upload_max_bytes)
        await reseal_document_keys(app.state.sessions, app.state.secrets)
        # Reads with a hosting doctor's break-glass token: keyservice confirms the case each time.
        app.state.fhir_authorizer.break_glass_case = app.state.break_glass.check_case
        add_readiness_check(app, "records", records.is_ready)
        add_readiness_check(app, "fileservice", files.is_ready)
        add_readiness_check(app, "keyservice", keys.is_ready)
        sweeping = asyncio.create_task(sweeper.run(settings.binary_orphan_sweep_interval_seconds))
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await close_sign_in(app)
            for task in (maintenance, sweeping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await final_checkpoint(app.state.audit)
            for client in (records, files, keys):
                await client.close()
            await engine.dispose()

    app = build_app("api", lifespan)
    app.state.settings = settings
    app.include_router(mesh_router(app, "gateway"))
    from_gateway = [Depends(require_callers("gateway"))]
    # Routes are matched in order, and FHIR requests are the hot path: the routes
    # under /fhir come first. api's own (the SMART configuration in oauth, Consent,
    # Binary content, AuditEvent, $erase) precede the catch-all, which forwards
    # everything else to records; the routes outside /fhir follow it.
    app.include_router(oauth_router, dependencies=from_gateway)
    app.include_router(consent_router, dependencies=from_gateway)
    app.include_router(binaries_router, dependencies=from_gateway)
    app.include_router(audit_router, dependencies=from_gateway)
    app.include_router(erasure_router, dependencies=from_gateway)
    app.include_router(fhir_router, dependencies=from_gateway)
    app.include_router(admin_router, dependencies=from_gateway)
    app.include_router(webauthn_router, dependencies=from_gateway)
    app.include_router(break_glass_router, dependencies=from_gateway)
    app.include_router(escrow_admin_router, dependencies=from_gateway)
    return app
