"""What api tells records about a FHIR request, and the checks around it."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from carevault_api.auth.principal import Principal
from carevault_api.authorization.fhir import Access, AccessDenied, FhirAuthorizer, touch_of
from carevault_api.fhir.negotiation import accepts_fhir_json
from carevault_common.errors import NotFound, ProblemError, ServiceUnavailable

# The client headers records needs; everything else stays at the api.
RECORDS_HEADERS = frozenset({"content-type", "accept", "if-match", "prefer", "idempotency-key", "x-patient-key"})
# Set by records: the patients whose keyrings a request opened. Never relayed to clients.
PATIENT_HEADER = "x-carevault-patient"
# Set by api on $everything: the only resource types records may export.
RESOURCE_TYPES_HEADER = "x-carevault-resource-types"


def public_base_url(request: Request) -> str:
    """The FHIR base as the client sees it (the gateway sets the forwarded host)."""
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "localhost")
    return f"https://{host}/fhir"


def records_headers(client_headers: dict[str, str], principal: Principal, request: Request, access: Access | None = None) -> dict[str, str]:
    headers = client_headers | {
        "x-carevault-tenant": access.tenant if access is not None else principal.tenant,
        "x-carevault-principal": principal.subject,
        "x-carevault-base-url": public_base_url(request),
        "x-carevault-patient-scope": access.patient_scope if access is not None else "",
    }
    if access is not None and access.resource_types is not None:
        # $everything under a consent limited to some types: records exports those only.
        headers[RESOURCE_TYPES_HEADER] = ",".join(sorted(access.resource_types))
    return headers


async def require_fhir_json(request: Request) -> None:
    """406 for a client that accepts no FHIR JSON (``Accept``, ``_format``): answering
    it anyway would hand it a format it said it cannot read."""
    if not accepts_fhir_json(request.headers.get("accept"), request.query_params.get("_format")):
        raise ProblemError(
            "This server answers in FHIR JSON only: accept application/fhir+json (or application/json), or send _format=json.",
            status=406,
            code="not-acceptable",
            title="Not acceptable",
        )


async def json_body(request: Request) -> Any:
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProblemError("The body is not valid JSON.", code="invalid-json") from None


async def authorize(request: Request, principal: Principal, path: str) -> Access:
    authorizer: FhirAuthorizer = request.app.state.fhir_authorizer
    method = request.method
    body = await json_body(request) if method in ("POST", "PUT") and not principal.development else None
    touch = touch_of(method, path, list(request.query_params.multi_items()), body, request.headers.get("x-patient-id"))
    return await authorizer.decide(principal, touch)


async def authorize_bundle(request: Request, principal: Principal) -> Access:
    authorizer: FhirAuthorizer = request.app.state.fhir_authorizer
    if principal.development:
        return await authorizer.decide_bundle(principal, None)
    return await authorizer.decide_bundle(principal, await json_body(request))


async def checked_read(request: Request, principal: Principal, access: Access, headers: dict[str, str]) -> Response:
    """A read whose patient only records knows: fetched whole, authorized, then relayed."""
    authorizer: FhirAuthorizer = request.app.state.fhir_authorizer
    upstream = await request.app.state.records.request(
        "GET", request.url.path, headers=headers, params=list(request.query_params.multi_items())
    )
    await authorizer.check_reported(principal, access, upstream.status, upstream.headers.get(PATIENT_HEADER))
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "etag", "last-modified", "location")}
    return Response(upstream.body, status_code=upstream.status, headers=kept)


async def preflight_delete(request: Request, principal: Principal, access: Access, headers: dict[str, str]) -> dict[str, str]:
    """Learn the patient of a resource before deleting it; the delete is then restricted to that patient."""
    authorizer: FhirAuthorizer = request.app.state.fhir_authorizer
    upstream = await request.app.state.records.request("GET", request.url.path, headers=headers)
    await authorizer.check_reported(principal, access, upstream.status, upstream.headers.get(PATIENT_HEADER))
    if not access.patients:
        # No patient established (no such resource, or already deleted): nothing is
        # forwarded, since nothing could be authorized; the read's answer is given.
        if upstream.status == 410:
            raise ProblemError("This resource was deleted.", status=410, code="gone", title="Gone")
        if upstream.status == 404:
            raise NotFound("No such resource.")
        if upstream.status >= 500:
            raise ServiceUnavailable("The records service could not be asked.")
        raise AccessDenied("The patient of this resource could not be established.")
    return headers | {"x-carevault-patient-scope": ",".join(sorted(access.patients))}


async def after_write(request: Request, principal: Principal, access: Access, response: Response) -> None:
    """A patient who registered their own Patient record is linked to it."""
    if "x-carevault-patient" in response.headers:
        del response.headers[PATIENT_HEADER]
    if not access.link_new_patient or response.status_code != 201:
        return
    body = getattr(response, "body", b"")
    patient_id = orjson.loads(body).get("id") if body else None
    if isinstance(patient_id, str):
        from carevault_api.accounts import repository as accounts
        from carevault_common.db import session_scope

        async with session_scope(request.app.state.sessions) as session:
            await accounts.link_patient(session, principal.subject, principal.tenant, patient_id, "self")
