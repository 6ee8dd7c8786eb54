"""``POST /_patients/{id}/erase``: api only, after api has authorised the erasure
and written it to its erasure journal. Not under /fhir: api's FHIR forwarder
cannot reach it."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request

from carevault_common.app import json_response
from carevault_common.mtls import require_callers
from carevault_records.deps import CallerDep, PatientKeyDep
from carevault_records.erasure.service import erase_patient

router = APIRouter(prefix="/_patients", dependencies=[Depends(require_callers("api"))])


@router.post("/{patient_id}/erase")
async def erase(patient_id: str, request: Request, caller: CallerDep, key: PatientKeyDep) -> object:
    state = request.app.state
    done = await erase_patient(state.engine, state.sessions, state.resources.keys, caller.tenant, patient_id, key)
    return json_response(
        {
            "erased": asdict(done.rows),
            "escrow_packages": done.escrow_packages,
            "blobs": done.blobs,
            "binaries_without_key": done.binaries_without_key,
        }
    )
