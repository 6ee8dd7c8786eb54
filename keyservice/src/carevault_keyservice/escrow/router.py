"""Escrow endpoints: records only (escrow, and its erasure with the patient's data)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from carevault_common.db import forget_deleted_pages, session_scope
from carevault_common.errors import ProblemError, ServiceUnavailable
from carevault_common.mtls import require_callers
from carevault_crypto import InvalidKeyFormat, PatientKey
from carevault_keyservice.deps import SessionDep
from carevault_keyservice.escrow import repository
from carevault_keyservice.escrow.doctor_keys import DoctorKeyDirectory
from carevault_keyservice.escrow.service import NoDoctorKey, escrow_patient_key

router = APIRouter(prefix="/escrow", dependencies=[Depends(require_callers("records"))])

Identifier = Annotated[str, Field(min_length=1, max_length=64)]


class EscrowRequest(BaseModel):
    tenant: Identifier
    patient_id: Identifier
    key_version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    patient_key: Annotated[str, Field(min_length=43, max_length=43, repr=False)]


class KeysetResponse(BaseModel):
    keyset: str


class EraseRequest(BaseModel):
    tenant: Identifier
    patient_id: Identifier


class EraseResponse(BaseModel):
    deleted: int


def doctor_keys(request: Request) -> DoctorKeyDirectory:
    directory: DoctorKeyDirectory = request.app.state.doctor_keys
    return directory


@router.post("/patients")
async def escrow(body: EscrowRequest, session: SessionDep, request: Request) -> KeysetResponse:
    try:
        key = PatientKey.from_header(body.patient_key)
    except InvalidKeyFormat:
        raise ProblemError("patient_key is not a valid key.", code="invalid-patient-key") from None
    try:
        keyset = await escrow_patient_key(
            session, doctor_keys(request), tenant=body.tenant, patient_id=body.patient_id, key_version=body.key_version, key=key
        )
    except NoDoctorKey:
        raise ServiceUnavailable("No hosting-doctor key is configured; keys cannot be escrowed.") from None
    return KeysetResponse(keyset=keyset)


@router.get("/keyset")
async def keyset(request: Request) -> KeysetResponse:
    return KeysetResponse(keyset=doctor_keys(request).keyset().id)


@router.post("/patients/erase")
async def erase(body: EraseRequest, request: Request) -> EraseResponse:
    """Delete every escrow package of the patient (GDPR Art. 17, on records' request
    during an erasure). Idempotent: a second call deletes nothing and succeeds. Its
    own transaction, committed before the write-ahead log is cleared of the pages."""
    async with session_scope(request.app.state.sessions) as session:
        deleted = await repository.delete_patient(session, body.tenant, body.patient_id)
    await forget_deleted_pages(request.app.state.engine)
    return EraseResponse(deleted=deleted)
