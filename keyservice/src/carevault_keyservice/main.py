"""keyservice app: accepts records (escrow) and api (break-glass), nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from carevault_common.app import add_readiness_check, attach_database, build_app, lifespan_marker, mesh_router
from carevault_keyservice.break_glass.router import router as break_glass_router
from carevault_keyservice.config import Settings
from carevault_keyservice.escrow.doctor_keys import DoctorKeyDirectory
from carevault_keyservice.escrow.router import router as escrow_router


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = attach_database(app, settings)
        add_readiness_check(app, "doctor-keys", _has_doctor_keys)
        try:
            async for _ in lifespan_marker(app):
                yield
        finally:
            await engine.dispose()

    app = build_app("keyservice", lifespan, openapi_url=None)
    app.state.settings = settings
    app.state.doctor_keys = DoctorKeyDirectory(settings.doctor_keys_dir)

    async def _has_doctor_keys() -> bool:
        return bool(app.state.doctor_keys.keyset().keys)

    app.include_router(mesh_router(app, "records", "api"))
    app.include_router(escrow_router)
    app.include_router(break_glass_router)
    return app
