"""``GET /fhir/Patient/{id}/$everything`` (api only): the patient's whole record, streamed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import StreamingResponse

from carevault_common.errors import FHIR_MEDIA_TYPE
from carevault_common.mtls import require_callers
from carevault_records.deps import CallerDep, KeyringsDep, ResourcesDep
from carevault_records.export.service import everything, open_export, parse_export_query
from carevault_records.fhir.search import lenient_handling

RESOURCE_TYPES_HEADER = "x-carevault-resource-types"

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_callers("api"))])


@router.get("/Patient/{patient_id}/$everything")
async def patient_everything(
    patient_id: str, request: Request, caller: CallerDep, keyrings: KeyringsDep, resources: ResourcesDep
) -> StreamingResponse:
    query = parse_export_query(list(request.query_params.multi_items()), lenient=lenient_handling(request.headers.get("prefer")))
    keyring = await open_export(resources, keyrings, patient_id)
    # api's authorization: a caller under a consent limited to some types gets those only.
    limited = request.headers.get(RESOURCE_TYPES_HEADER)
    types = query.limited_to(frozenset(t for t in limited.split(",") if t) if limited is not None else None)
    body = everything(request.app.state.sessions, caller.tenant, patient_id, keyring, caller.base_url, types, query.since)
    return StreamingResponse(body, media_type=FHIR_MEDIA_TYPE)
