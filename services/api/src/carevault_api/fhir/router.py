"""The FHIR API as seen from outside: authenticate, authorize, then hand the request to
records, audited (carevault_api.audit.relay): refusals, reads and writes alike. Binary
content, AuditEvent and $erase are api's own routes, included before this router's
catch-all (main.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_api.audit.hints import note_patients
from carevault_api.audit.relay import MAX_FHIR_BODY, audited
from carevault_api.auth.principal import Principal
from carevault_api.authorization.fhir import Access
from carevault_api.binaries.bundles import mentions_binary, process_bundle
from carevault_api.deps import PrincipalDep
from carevault_api.fhir.service import (
    RECORDS_HEADERS,
    after_write,
    authorize,
    authorize_bundle,
    checked_read,
    preflight_delete,
    records_headers,
    require_fhir_json,
)
from carevault_common.errors import PayloadTooLarge
from carevault_common.proxy import Answer, ask, forward, forwarded_headers

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_fhir_json)])

FHIR_METHODS = ["GET", "POST", "PUT", "DELETE"]


@router.get("/metadata")
async def capability_statement(request: Request) -> Response:
    """Public, as FHIR clients expect: it says what the server supports, nothing more."""
    return await forward(request, request.app.state.records, 0, forwarded_headers(request, frozenset({"accept"})))


@router.post("")
@router.post("/")
async def fhir_bundle(request: Request, principal: PrincipalDep) -> Response:
    """Transaction and batch Bundles at the FHIR base (with or without its slash).
    A Bundle that writes Binary resources has their content stored first."""

    async def handle() -> Response:
        access = await authorize_bundle(request, principal)
        headers = records_headers(forwarded_headers(request, RECORDS_HEADERS), principal, request, access)
        declared = request.headers.get("content-length")
        if declared is None or (declared.isascii() and declared.isdigit() and int(declared) <= MAX_FHIR_BODY):
            body = await request.body()
            if len(body) > MAX_FHIR_BODY:
                raise PayloadTooLarge("The request body exceeds the size limit.")
            if mentions_binary(body):
                return await process_bundle(request.app.state.binaries, headers, body, list(request.query_params.multi_items()))
        # A transaction of thousands of entries takes records longer than one resource does.
        timeout = request.app.state.settings.records_bundle_timeout_seconds
        answer = await ask(request, request.app.state.records, MAX_FHIR_BODY, headers, path="/fhir", timeout_seconds=timeout)
        return await relayed(request, principal, access, answer)

    return await audited(request, principal, handle, path="/fhir")


@router.api_route("/{path:path}", methods=FHIR_METHODS)
async def fhir(request: Request, path: str, principal: PrincipalDep) -> Response:

    async def handle() -> Response:
        access = await authorize(request, principal, path)
        headers = records_headers(forwarded_headers(request, RECORDS_HEADERS), principal, request, access)
        if access.post_check is not None:
            return await checked_read(request, principal, access, headers)
        if access.preflight_delete is not None:
            headers = await preflight_delete(request, principal, access, headers)
        answer = await ask(request, request.app.state.records, MAX_FHIR_BODY, headers)
        return await relayed(request, principal, access, answer)

    return await audited(request, principal, handle)


async def relayed(request: Request, principal: Principal, access: Access, answer: Answer) -> Response:
    """records' answer, its patients noted for the audit trail, after the sign-in follow-up."""
    note_patients(answer.internal)
    try:
        response = answer.response()
        await after_write(request, principal, access, response)
    except BaseException:
        answer.discard()
        raise
    return response
