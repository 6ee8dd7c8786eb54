"""``POST /fhir/Patient/{id}/$rotate-key``: replace a patient's key without
re-encrypting any body (FHIR operation; api only); ``POST /_patients/{id}/verify-key``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_common.errors import FHIR_MEDIA_TYPE, ProblemError
from carevault_common.mtls import require_callers
from carevault_crypto import InvalidKeyFormat, PatientKey
from carevault_records.deps import CallerDep, PatientKeyDep, SessionDep
from carevault_records.errors import InvalidPatientKey, PatientKeyRequired, PatientOutOfScope

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_callers("api"))])
# Mesh-internal (not under /fhir: api's FHIR forwarder cannot reach it).
internal_router = APIRouter(prefix="/_patients", dependencies=[Depends(require_callers("api"))])


def _new_key(parameters: Any) -> PatientKey:
    """The new key from a FHIR Parameters body: ``newKey`` as valueString."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise ProblemError("The body must be a FHIR Parameters resource.", code="invalid-parameters")
    values = [p.get("valueString") for p in parameters.get("parameter", []) if isinstance(p, dict) and p.get("name") == "newKey"]
    if len(values) != 1 or not isinstance(values[0], str):
        raise ProblemError("Parameters must hold exactly one newKey (valueString).", code="invalid-parameters")
    try:
        return PatientKey.from_header(values[0])
    except InvalidKeyFormat:
        raise InvalidPatientKey("newKey must be 32 bytes in base64url without padding.") from None


@router.post("/Patient/{patient_id}/$rotate-key")
async def rotate_key(patient_id: str, request: Request, session: SessionDep, caller: CallerDep, key: PatientKeyDep) -> Response:
    if key is None:
        raise PatientKeyRequired()
    if caller.patient_scope is not None and patient_id not in caller.patient_scope:
        raise PatientOutOfScope("This request is not authorized for this patient's records.")
    try:
        parameters = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ProblemError("The body is not valid JSON.", code="invalid-json") from None
    new_key = _new_key(parameters)
    if new_key == key:
        raise ProblemError("The new key must differ from the old one.", code="same-key")
    version = await request.app.state.resources.keys.rotate(session, caller.tenant, patient_id, key, new_key)
    body = {"resourceType": "Parameters", "parameter": [{"name": "keyVersion", "valueInteger": version}]}
    return Response(orjson.dumps(body), media_type=FHIR_MEDIA_TYPE)


@internal_router.post("/{patient_id}/verify-key")
async def verify_key(patient_id: str, request: Request, session: SessionDep, caller: CallerDep, key: PatientKeyDep) -> Response:
    """204 if the X-Patient-Key opens this patient's data (api's check before it shows
    a patient who accessed their records); the usual 401/403/410/422 otherwise."""
    if key is None:
        raise PatientKeyRequired()
    await request.app.state.resources.keys.unlock(session, caller.tenant, patient_id, key)
    return Response(status_code=204)
