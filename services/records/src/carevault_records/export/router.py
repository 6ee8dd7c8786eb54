"""``GET /fhir/Patient/{id}/$everything`` (api only): the patient's whole record, streamed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import StreamingResponse

from carevault_common.errors import FHIR_MEDIA_TYPE
from carevault_common.mtls import require_callers
from carevault_records.deps import CallerDep, KeyringsDep, ResourcesDep
from carevault_records.export.service import everything, open_export

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_callers("api"))])


@router.get("/Patient/{patient_id}/$everything")
async def patient_everything(
    patient_id: str, request: Request, caller: CallerDep, keyrings: KeyringsDep, resources: ResourcesDep
) -> StreamingResponse:
    keyring = await open_export(resources, keyrings, patient_id)
    body = everything(request.app.state.sessions, caller.tenant, patient_id, keyring, caller.base_url)
    return StreamingResponse(body, media_type=FHIR_MEDIA_TYPE)
