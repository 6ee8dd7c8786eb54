"""``/files/*``: what api needs to move Binary content (api only; not FHIR).

``POST /files/prepare`` ``{"patient": id, "binary": id?}`` -> a new blob id, its file
key (transport form) and the content extension to put on the Binary;
``GET /files/Binary/{id}`` (and ``/_history/{vid}``) -> blob id, file key, content
type, size and the public Binary resource. Both check ``X-Patient-Key`` first.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_common.app import json_response
from carevault_common.errors import NotFound, ProblemError
from carevault_common.mtls import require_callers
from carevault_records.deps import KeyringsDep
from carevault_records.fhir.compartment import patient_reference_id

router = APIRouter(prefix="/files", dependencies=[Depends(require_callers("api"))])


@router.post("/prepare")
async def prepare(request: Request, keyrings: KeyringsDep) -> Response:
    body = await request.json()
    patient = body.get("patient") if isinstance(body, dict) else None
    binary = body.get("binary") if isinstance(body, dict) else None
    patient_id = patient_reference_id({"reference": patient}) if isinstance(patient, str) else None
    if patient_id is None or (binary is not None and not isinstance(binary, str)):
        raise ProblemError("prepare needs {'patient': 'Patient/<id>', 'binary': '<id>'?}.", code="invalid-prepare")
    prepared = await request.app.state.binaries.prepare(keyrings, patient_id, binary)
    return json_response(prepared.to_json())


@router.get("/Binary/{binary_id}")
async def open_current(binary_id: str, request: Request, keyrings: KeyringsDep) -> Response:
    return json_response(await request.app.state.binaries.open(keyrings, binary_id, None))


@router.get("/Binary/{binary_id}/_history/{version_id}")
async def open_version(binary_id: str, version_id: str, request: Request, keyrings: KeyringsDep) -> Response:
    if not version_id.isdigit():
        raise NotFound("Version ids are numbers.")
    return json_response(await request.app.state.binaries.open(keyrings, binary_id, int(version_id)))
