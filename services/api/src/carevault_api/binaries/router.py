"""``/fhir/Binary``: raw file content in and out (create, update, read, vread).
Search, history and delete of Binary go to records like any other type. Each
route is audited as the FHIR relay audits (carevault_api.audit.relay.audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from carevault_api.audit.relay import audited
from carevault_api.auth.principal import Principal
from carevault_api.authorization.fhir import Access, FhirAuthorizer, touch_of
from carevault_api.binaries.service import BinaryService, Upload, parse_json_binary, patient_reference, require_media_type
from carevault_api.deps import PrincipalDep
from carevault_api.fhir.service import RECORDS_HEADERS, records_headers
from carevault_common.errors import PayloadTooLarge, ProblemError
from carevault_common.proxy import forwarded_headers

router = APIRouter(prefix="/fhir/Binary")

FHIR_JSON = ("application/fhir+json", "application/json+fhir")
MAX_JSON_BINARY_BODY = 32 * 1024 * 1024


def _service(request: Request) -> BinaryService:
    service: BinaryService = request.app.state.binaries
    return service


async def _authorized(request: Request, principal: Principal, path: str, patient: str | None) -> tuple[dict[str, str], Access]:
    """Authorize like any FHIR request (consent, scopes, tenant), the patient named by
    X-Security-Context (writes) or X-Patient-Id; then the headers records gets."""
    authorizer: FhirAuthorizer = request.app.state.fhir_authorizer
    hint = request.headers.get("x-patient-id") or (patient.removeprefix("Patient/") if patient else None)
    access = await authorizer.decide(principal, touch_of(request.method, path, [], None, hint))
    headers = records_headers(
        forwarded_headers(request, RECORDS_HEADERS - {"content-type", "accept", "if-match"}), principal, request, access
    )
    return headers, access


async def _upload(request: Request, security_context: str | None) -> Upload:
    """The content to store: a raw body with its own Content-Type (streamed), or a
    Binary resource in FHIR JSON with base64 data."""
    content_type = request.headers.get("content-type") or "application/octet-stream"
    declared = request.headers.get("content-length")
    length = int(declared) if declared is not None and declared.isascii() and declared.isdigit() else None
    if content_type.split(";", 1)[0].strip().lower() in FHIR_JSON:
        if length is not None and length > MAX_JSON_BINARY_BODY:
            raise PayloadTooLarge("A Binary sent as FHIR JSON is limited to 32 MiB; send larger files raw.")
        body = await request.body()
        if len(body) > MAX_JSON_BINARY_BODY:
            raise PayloadTooLarge("A Binary sent as FHIR JSON is limited to 32 MiB; send larger files raw.")
        return parse_json_binary(body, security_context)
    require_media_type(content_type, "Content-Type")
    return Upload(content_type, patient_reference(security_context), request.stream(), length, {})


@router.post("")
async def create_binary(request: Request, principal: PrincipalDep, x_security_context: Annotated[str | None, Header()] = None) -> Response:
    async def handle() -> Response:
        upload = await _upload(request, x_security_context)
        headers, _ = await _authorized(request, principal, "Binary", upload.patient)
        return await _service(request).write(headers, upload, None, idempotency_key=request.headers.get("idempotency-key"))

    return await audited(request, principal, handle)


@router.put("/{binary_id}")
async def update_binary(
    binary_id: str,
    request: Request,
    principal: PrincipalDep,
    x_security_context: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    async def handle() -> Response:
        if "idempotency-key" in request.headers:
            raise ProblemError(
                "Idempotency-Key applies to creates (POST); make an update safe to retry with If-Match.",
                code="idempotency-key-on-update",
            )
        upload = await _upload(request, x_security_context)
        headers, _ = await _authorized(request, principal, f"Binary/{binary_id}", upload.patient)
        return await _service(request).write(headers, upload, binary_id, if_match)

    return await audited(request, principal, handle)


async def _read(request: Request, principal: PrincipalDep, binary_id: str, version_id: str | None, format_: str | None) -> Response:
    async def handle() -> Response:
        headers, access = await _authorized(request, principal, f"Binary/{binary_id}", None)
        authorizer: FhirAuthorizer = request.app.state.fhir_authorizer

        async def check_patient(reported: str | None) -> None:
            await authorizer.check_reported(principal, access, 200, reported)

        return await _service(request).read(
            headers,
            binary_id,
            version_id,
            accept=request.headers.get("accept"),
            format_param=format_,
            byte_range=request.headers.get("range"),
            check_patient=check_patient if access.post_check is not None else None,
        )

    return await audited(request, principal, handle)


@router.get("/{binary_id}")
async def read_binary(
    binary_id: str, request: Request, principal: PrincipalDep, format_: Annotated[str | None, Query(alias="_format")] = None
) -> Response:
    return await _read(request, principal, binary_id, None, format_)


@router.get("/{binary_id}/_history/{version_id}")
async def vread_binary(
    binary_id: str,
    version_id: str,
    request: Request,
    principal: PrincipalDep,
    format_: Annotated[str | None, Query(alias="_format")] = None,
) -> Response:
    return await _read(request, principal, binary_id, version_id, format_)
