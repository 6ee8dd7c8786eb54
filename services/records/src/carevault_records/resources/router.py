"""FHIR REST routes of records (called by api only). Thin: parse, call the service, render."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from carevault_common.errors import FHIR_MEDIA_TYPE, ProblemError
from carevault_common.mtls import require_callers
from carevault_records.deps import CallerDep, KeyringsDep, ResourcesDep
from carevault_records.fhir.compartment import served_by_api
from carevault_records.fhir.outcome import FhirError, operation_outcome
from carevault_records.fhir.search import lenient_handling
from carevault_records.idempotency import service as idempotency
from carevault_records.resources.service import Written, parse_history_query, parse_version_id


async def not_served_by_api(request: Request) -> None:
    """api answers its own types (Consent, AuditEvent) before relaying; whatever of them
    still reaches records (``Consent/{id}/_history``, a caller other than api's routes)
    finds nothing stored here and is told where the type is served."""
    resource_type = request.path_params.get("resource_type")
    refusal = served_by_api(resource_type) if isinstance(resource_type, str) else None
    if refusal is not None:
        status = 422 if request.method in ("POST", "PUT") else 404
        raise FhirError(operation_outcome("error", "not-supported", refusal), status=status)


router = APIRouter(prefix="/fhir", dependencies=[Depends(require_callers("api")), Depends(not_served_by_api)])

MAX_JSON_BYTES = 32 * 1024 * 1024


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_MEDIA_TYPE, headers=headers)


def written_response(written: Written, status: int) -> Response:
    headers = {"etag": written.etag, "last-modified": written.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    if status == 201:
        headers["location"] = written.location
    return fhir_response(written.resource, status, headers)


async def read_json(request: Request) -> tuple[Any, bytes]:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise ProblemError("The resource is too large.", status=413, code="payload-too-large")
    try:
        return orjson.loads(body), body
    except orjson.JSONDecodeError:
        raise ProblemError("The body is not valid JSON.", code="invalid-json") from None


@router.post("/{resource_type}")
async def create(
    resource_type: str,
    request: Request,
    caller: CallerDep,
    keyrings: KeyringsDep,
    resources: ResourcesDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    resource, raw = await read_json(request)
    if idempotency_key is not None:
        # A Binary's body names a fresh blob each time: api sends the digest of its content instead.
        digest = request.headers.get(idempotency.CONTENT_DIGEST_HEADER) if resource_type == "Binary" else None
        fingerprinted = raw if digest is None else idempotency.digest_body(digest)
        fingerprint = idempotency.request_hash(
            caller.tenant, idempotency.check_key(idempotency_key), "POST", request.url.path, fingerprinted
        )
        replay = await idempotency.find_replay(keyrings.session, caller.tenant, idempotency_key, fingerprint)
        if replay is not None:
            first = replay.response
            written = await resources.vread(keyrings, first["type"], first["id"], first["version"])
            response = written_response(written, replay.status)
            response.headers[idempotency.REPLAY_HEADER] = "1"
            return response
    written = await resources.create(keyrings, resource_type, resource)
    if idempotency_key is not None:
        reference = {"type": resource_type, "id": written.resource["id"], "version": written.version_id}
        await idempotency.remember(keyrings.session, caller.tenant, idempotency_key, fingerprint, 201, reference)
    return written_response(written, 201)


@router.get("/{resource_type}")
async def search(
    resource_type: str,
    request: Request,
    caller: CallerDep,
    keyrings: KeyringsDep,
    resources: ResourcesDep,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    params = list(request.query_params.multi_items())
    bundle = await resources.search(keyrings, resource_type, params, caller.base_url, lenient=lenient_handling(prefer))
    return fhir_response(bundle)


@router.get("/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, keyrings: KeyringsDep, resources: ResourcesDep) -> Response:
    return written_response(await resources.read(keyrings, resource_type, resource_id), 200)


@router.put("/{resource_type}/{resource_id}")
async def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    keyrings: KeyringsDep,
    resources: ResourcesDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    resource, _ = await read_json(request)
    return written_response(await resources.update(keyrings, resource_type, resource_id, resource, if_match), 200)


@router.delete("/{resource_type}/{resource_id}")
async def delete(resource_type: str, resource_id: str, keyrings: KeyringsDep, resources: ResourcesDep) -> Response:
    await resources.delete(keyrings, resource_type, resource_id)
    return Response(status_code=204)


@router.get("/{resource_type}/{resource_id}/_history")
async def history(
    resource_type: str,
    resource_id: str,
    request: Request,
    caller: CallerDep,
    keyrings: KeyringsDep,
    resources: ResourcesDep,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    params = list(request.query_params.multi_items())
    query = parse_history_query(params, lenient=lenient_handling(prefer))
    return fhir_response(await resources.history(keyrings, resource_type, resource_id, caller.base_url, params, query))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(resource_type: str, resource_id: str, version_id: str, keyrings: KeyringsDep, resources: ResourcesDep) -> Response:
    return written_response(await resources.vread(keyrings, resource_type, resource_id, parse_version_id(version_id)), 200)
