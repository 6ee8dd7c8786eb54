"""The FHIR API as seen from outside: authenticate, then hand the request to records,
audited (carevault_api.audit.relay). Binary content, AuditEvent and $erase are api's
own routes, included before this router's catch-all (main.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from carevault_api.audit.relay import MAX_FHIR_BODY, audited
from carevault_api.audit.relay import relay as audit_relay
from carevault_api.binaries.bundles import mentions_binary, process_bundle
from carevault_api.deps import PrincipalDep
from carevault_api.fhir.service import RECORDS_HEADERS, records_headers
from carevault_common.errors import PayloadTooLarge
from carevault_common.proxy import forward, forwarded_headers

router = APIRouter(prefix="/fhir")

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
    headers = records_headers(forwarded_headers(request, RECORDS_HEADERS), principal, request)
    declared = request.headers.get("content-length")
    if declared is None or (declared.isdigit() and int(declared) <= MAX_FHIR_BODY):
        body = await request.body()
        if len(body) > MAX_FHIR_BODY:
            raise PayloadTooLarge("The request body exceeds the size limit.")
        if mentions_binary(body):
            params = list(request.query_params.multi_items())
            return await audited(
                request, principal, lambda: process_bundle(request.app.state.binaries, headers, body, params), path="/fhir"
            )
    return await audit_relay(request, principal, headers, path="/fhir")


@router.api_route("/{path:path}", methods=FHIR_METHODS)
async def fhir(request: Request, path: str, principal: PrincipalDep) -> Response:
    headers = records_headers(forwarded_headers(request, RECORDS_HEADERS), principal, request)
    return await audit_relay(request, principal, headers)
