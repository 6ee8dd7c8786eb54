"""Break-glass endpoints: api only (api authenticates the people; keyservice
enforces the workflow)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from carevault_common.mtls import require_callers
from carevault_keyservice.break_glass import repository, rewrap, service
from carevault_keyservice.deps import SessionDep
from carevault_keyservice.escrow import repository as escrow_repository

router = APIRouter(prefix="/break-glass", dependencies=[Depends(require_callers("api"))])

Identifier = Annotated[str, Field(min_length=1, max_length=64)]
Person = Annotated[str, Field(min_length=1, max_length=128)]


class OpenRequest(BaseModel):
    tenant: Identifier
    patient_id: Identifier
    requester: Person
    reason: Annotated[str, Field(min_length=10, max_length=2000)]
    document_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Decision(BaseModel):
    decided_by: Person
    approve: bool


class Release(BaseModel):
    requester: Person


class Closing(BaseModel):
    closed_by: Person


class UploadedItem(BaseModel):
    tenant: Identifier
    patient_id: Identifier
    key_version: Annotated[int, Field(ge=1)]
    doctor_key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    package: Annotated[str, Field(max_length=8192)]


@router.post("/requests", status_code=201)
async def open_request(body: OpenRequest, session: SessionDep) -> dict[str, object]:
    request = await service.open_request(
        session,
        tenant=body.tenant,
        patient_id=body.patient_id,
        requester=body.requester,
        reason=body.reason,
        document_sha256=body.document_sha256,
    )
    return service.describe(request)


@router.get("/requests")
async def list_requests(tenant: Identifier, session: SessionDep) -> dict[str, object]:
    return {"requests": [service.describe(r) for r in await repository.list_for_tenant(session, tenant)]}


@router.get("/requests/{request_id}")
async def get_request(request_id: str, session: SessionDep) -> dict[str, object]:
    return service.describe(await service.get(session, request_id))


@router.post("/requests/{request_id}/decision")
async def decide(request_id: str, body: Decision, session: SessionDep, request: Request) -> dict[str, object]:
    window = timedelta(seconds=request.app.state.settings.break_glass_window_seconds)
    decided = await service.decide(session, request_id, decided_by=body.decided_by, approve=body.approve, window=window)
    return service.describe(decided)


@router.post("/requests/{request_id}/release")
async def release(request_id: str, body: Release, session: SessionDep) -> dict[str, object]:
    packages = await service.release(session, request_id, requester=body.requester)
    return {
        "packages": [
            {
                "tenant": p.tenant,
                "patient_id": p.patient_id,
                "key_version": p.key_version,
                "doctor_key_id": p.doctor_key_id,
                "package": p.package_b64,
            }
            for p in packages
        ]
    }


@router.post("/requests/{request_id}/access")
async def check_access(request_id: str, body: Release, session: SessionDep) -> dict[str, object]:
    """Whether the requester may read the patient's records now (api asks before
    every read with a break-glass token); changes nothing."""
    return service.describe(await service.check_access(session, request_id, requester=body.requester))


@router.post("/requests/{request_id}/close")
async def close(request_id: str, body: Closing, session: SessionDep) -> dict[str, object]:
    return service.describe(await service.close(session, request_id, closed_by=body.closed_by))


class EscrowUpload(BaseModel):
    packages: Annotated[list[UploadedItem], Field(max_length=10_000)]


@router.get("/escrow-export")
async def export_packages(
    doctor_key_id: Annotated[str, Query(pattern=r"^[0-9a-f]{32}$")], session: SessionDep, after: int = 0, limit: int = 1000
) -> dict[str, object]:
    """Packages sealed to one doctor key, as the doctor tool's re-escrow input (paged)."""
    rows = await escrow_repository.packages_for_doctor_key(session, doctor_key_id, after, min(max(limit, 1), 5000))
    return {
        "packages": [
            {
                "tenant": p.tenant,
                "patient_id": p.patient_id,
                "key_version": p.key_version,
                "doctor_key_id": p.doctor_key_id,
                "package": base64.b64encode(p.package).decode("ascii"),
            }
            for p in rows
        ],
        "next_after": rows[-1].id if rows else None,
    }


@router.get("/escrow-coverage")
async def escrow_coverage(session: SessionDep, request: Request) -> dict[str, object]:
    """Counts only (never a package): patient key versions escrowed, packages per doctor
    key, and which keys are active, to check a re-escrow before retiring the old key."""
    key_versions, per_key = await escrow_repository.coverage(session)
    active = {k.key_id for k in request.app.state.doctor_keys.keyset().keys}
    return {
        "key_versions": key_versions,
        "doctor_keys": [
            {
                "doctor_key_id": key_id,
                "active": key_id in active,
                "packages": per_key.get(key_id, 0),
                "missing": key_versions - per_key.get(key_id, 0),
            }
            for key_id in sorted(active | set(per_key))
        ],
    }


@router.post("/escrow-uploads")
async def upload_packages(body: EscrowUpload, session: SessionDep, request: Request) -> dict[str, int]:
    items = [rewrap.UploadedPackage(i.tenant, i.patient_id, i.key_version, i.doctor_key_id, i.package) for i in body.packages]
    result = await rewrap.upload(session, request.app.state.doctor_keys, items)
    return {"added": result.added, "already_present": result.already_present}
