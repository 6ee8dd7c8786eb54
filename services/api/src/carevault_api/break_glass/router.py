"""``/break-glass/*``: the hosting doctor's break-glass workflow (docs/api.md).

Thin: each route authenticates the caller and hands over to
:class:`carevault_api.break_glass.service.BreakGlass`, which checks the
permission matrix (second factor included), talks to keyservice and records
every step in the audit trail.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from carevault_api.break_glass.schemas import Decision, Identifier, NewRequest
from carevault_api.break_glass.service import BreakGlass
from carevault_api.deps import PrincipalDep
from carevault_common.errors import NotFound

router = APIRouter(prefix="/break-glass")

_REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def _service(request: Request) -> BreakGlass:
    service: BreakGlass = request.app.state.break_glass
    return service


async def _request_id(request_id: str) -> str:
    """keyservice's request ids are UUIDs; anything else names no request (and never
    reaches keyservice's URL space)."""
    if not _REQUEST_ID.match(request_id):
        raise NotFound("No such break-glass request.")
    return request_id


Service = Annotated[BreakGlass, Depends(_service)]
RequestId = Annotated[str, Depends(_request_id)]


@router.post("/requests", status_code=201)
async def open_request(body: NewRequest, request: Request, principal: PrincipalDep, service: Service) -> Any:
    return await service.open(request, principal, body)


@router.get("/requests")
async def list_requests(principal: PrincipalDep, service: Service, tenant: Annotated[Identifier | None, Query()] = None) -> Any:
    return {"requests": await service.list_requests(principal, tenant)}


@router.get("/requests/{request_id}")
async def get_request(request_id: RequestId, principal: PrincipalDep, service: Service) -> Any:
    return await service.get(principal, request_id)


@router.get("/requests/{request_id}/document")
async def get_document(request_id: RequestId, request: Request, principal: PrincipalDep, service: Service) -> Response:
    content, content_type = await service.document(request, principal, request_id)
    return Response(content, media_type=content_type, headers={"cache-control": "no-store", "content-disposition": "attachment"})


@router.post("/requests/{request_id}/decision")
async def decide(request_id: RequestId, body: Decision, request: Request, principal: PrincipalDep, service: Service) -> Any:
    return await service.decide(request, principal, request_id, body.approve)


@router.post("/requests/{request_id}/package")
async def download_package(request_id: RequestId, request: Request, response: Response, principal: PrincipalDep, service: Service) -> Any:
    packages = await service.release(request, principal, request_id)
    response.headers["cache-control"] = "no-store"
    return {"packages": packages}


@router.post("/requests/{request_id}/token")
async def issue_token(request_id: RequestId, request: Request, response: Response, principal: PrincipalDep, service: Service) -> Any:
    presented: dict[str, Any] = {}
    if not principal.development:
        # The caller's own token, already verified by the authenticator (memoised):
        # the new token is bound to the same DPoP key.
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = await service.oauth.verify_access_token(token.strip(), "DPoP" if scheme.lower() == "dpop" else "Bearer")
    issued = await service.token(request, principal, request_id, presented)
    response.headers["cache-control"] = "no-store"
    response.headers["pragma"] = "no-cache"
    return issued


@router.post("/requests/{request_id}/close")
async def close(request_id: RequestId, request: Request, principal: PrincipalDep, service: Service) -> Any:
    return await service.close(request, principal, request_id)
