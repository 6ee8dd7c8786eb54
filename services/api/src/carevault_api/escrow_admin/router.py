"""``/admin/escrow/*``: bulk re-escrow to a new hosting-doctor key, for platform
admins with a second factor (docs/api.md). Thin: the logic is in
:class:`carevault_api.escrow_admin.service.EscrowAdmin`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import StreamingResponse

from carevault_api.deps import PrincipalDep
from carevault_api.escrow_admin.service import DOCTOR_KEY_ID, EscrowAdmin

router = APIRouter(prefix="/admin/escrow")
JSON_LINES = "application/jsonl"


async def _service(request: Request) -> EscrowAdmin:
    service: EscrowAdmin = request.app.state.escrow_admin
    return service


Service = Annotated[EscrowAdmin, Depends(_service)]


@router.get("/coverage")
async def coverage(principal: PrincipalDep, service: Service) -> Any:
    return await service.coverage(principal)


@router.get("/export")
async def export(
    doctor_key_id: Annotated[str, Query(pattern=DOCTOR_KEY_ID)], request: Request, principal: PrincipalDep, service: Service
) -> StreamingResponse:
    started = await service.export(request, principal, doctor_key_id)
    # Not x-carevault-*: the gateway keeps those headers inside the mesh.
    headers = {"cache-control": "no-store", "escrow-packages": str(started.packages)}
    return StreamingResponse(started.lines, media_type=JSON_LINES, headers=headers)


@router.post("/uploads")
async def upload(request: Request, principal: PrincipalDep, service: Service) -> Any:
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isascii() and length.isdigit() else None
    return await service.upload(request, principal, request.stream(), declared)
