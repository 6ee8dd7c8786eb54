"""``POST /fhir`` (transaction and batch Bundles) and ``GET /fhir/metadata``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from carevault_common.mtls import require_callers
from carevault_records.deps import CallerDep, KeyringsDep
from carevault_records.fhir.capability import build_capability_statement
from carevault_records.idempotency import service as idempotency
from carevault_records.resources.router import fhir_response, read_json

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_callers("api"))])
CAPABILITY_DATE = "2026-11-26"


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    base = request.headers.get("x-carevault-base-url")
    return fhir_response(build_capability_statement(date=CAPABILITY_DATE, base_url=base))


@router.post("")
async def bundle(
    request: Request,
    caller: CallerDep,
    keyrings: KeyringsDep,
    idempotency_key: Annotated[str | None, Header()] = None,
    placeholders: Annotated[bool, Query(description="create tagged placeholders for unresolved conditional references")] = False,
) -> Response:
    body, raw = await read_json(request)
    if idempotency_key is not None:
        fingerprint = idempotency.request_hash(caller.tenant, idempotency.check_key(idempotency_key), "POST", request.url.path, raw)
        replay = await idempotency.find_replay(keyrings.session, caller.tenant, idempotency_key, fingerprint)
        if replay is not None:
            return fhir_response(replay.response, replay.status)
    response = await request.app.state.bundles.process(keyrings, body, caller.base_url, placeholders=placeholders)
    if idempotency_key is not None:
        # Locations and statuses only: read results carry content, which is not kept.
        stored = {**response, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in response.get("entry", [])]}
        await idempotency.remember(keyrings.session, caller.tenant, idempotency_key, fingerprint, 200, stored)
    return fhir_response(response)
