"""``POST /fhir/Patient/{id}/$erase`` (served by api, before the /fhir catch-all)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_api.audit.hints import SERVER_ID
from carevault_api.audit.permissions import can_erase
from carevault_api.audit.relay import purpose_of
from carevault_api.audit.service import Actor, trail_of
from carevault_api.deps import PrincipalDep
from carevault_api.erasure.service import erase_patient
from carevault_api.fhir.service import require_fhir_json
from carevault_common.errors import FHIR_MEDIA_TYPE, Forbidden, NotFound

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_fhir_json)])


@router.post("/Patient/{patient_id}/$erase")
async def erase(patient_id: str, request: Request, principal: PrincipalDep) -> Response:
    trail = trail_of(request)
    actor = Actor.of(principal, purpose_of(request))
    if not SERVER_ID.match(patient_id):
        raise NotFound("No such patient.")
    if not can_erase(principal, principal.tenant):
        await trail.append("fhir.erase", actor, outcome=403, resource_type="Patient", resource_id=patient_id)
        raise Forbidden("Erasing a patient needs the data-protection officer role.")
    patient_key = request.headers.get("x-patient-key")  # optional: with it, the patient's blobs are deleted too
    counts = await erase_patient(trail, request.app.state.records, request.app.state.files, actor, patient_id, patient_key)
    body = {"resourceType": "Parameters", "parameter": [{"name": name, "valueInteger": value} for name, value in sorted(counts.items())]}
    return Response(orjson.dumps(body), media_type=FHIR_MEDIA_TYPE)
