"""``/files/*``: what api needs to move Binary content (api only; not FHIR).

``POST /files/prepare`` ``{"patient": id, "binary": id?}`` -> a new blob id, its file
key (transport form) and the content extension to put on the Binary;
``GET /files/Binary/{id}`` (and ``/_history/{vid}``) -> blob id, file key, content
type, size and the public Binary resource. Both check ``X-Patient-Key`` first.

``POST /files/idempotency`` ``{"key": k, "digest": d?}`` (a Binary create with an
Idempotency-Key, before anything is stored): 204 if the key is unused; without a
digest 200 if it is used; with the digest of the new request, the first answer
replayed (201, with ``x-carevault-idempotent-replay``) or 422 if the key came with
another request.

The orphan sweep (api): ``POST /files/pending/abandon`` ``{"olderThanSeconds": n,
"limit": m}`` claims the uploads handed out more than n seconds ago whose Binary
never committed and returns ``{"blobIds": [...]}``; once api has deleted those
blobs, ``POST /files/pending/forget`` ``{"blobIds": [...]}`` drops them. No patient
key: these name blob ids only.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_common.app import json_response
from carevault_common.errors import ProblemError
from carevault_common.mtls import require_callers
from carevault_records.binaries import pending
from carevault_records.deps import CallerDep, KeyringsDep, ResourcesDep, SessionDep
from carevault_records.fhir.compartment import patient_reference_id
from carevault_records.idempotency import service as idempotency
from carevault_records.resources.router import written_response
from carevault_records.resources.service import parse_version_id

router = APIRouter(prefix="/files", dependencies=[Depends(require_callers("api"))])


@router.post("/prepare")
async def prepare(request: Request, keyrings: KeyringsDep) -> Response:
    body = await request.json()
    patient = body.get("patient") if isinstance(body, dict) else None
    binary = body.get("binary") if isinstance(body, dict) else None
    patient_id = patient_reference_id({"reference": patient}) if isinstance(patient, str) else None
    if patient_id is None or (binary is not None and not isinstance(binary, str)):
        raise ProblemError("prepare needs {'patient': 'Patient/<id>', 'binary': '<id>'?}.", code="invalid-prepare")
    prepared = await request.app.state.binaries.prepare(keyrings, patient_id, binary)
    return json_response(prepared.to_json())


@router.get("/Binary/{binary_id}")
async def open_current(binary_id: str, request: Request, keyrings: KeyringsDep) -> Response:
    return json_response(await request.app.state.binaries.open(keyrings, binary_id, None))


@router.get("/Binary/{binary_id}/_history/{version_id}")
async def open_version(binary_id: str, version_id: str, request: Request, keyrings: KeyringsDep) -> Response:
    return json_response(await request.app.state.binaries.open(keyrings, binary_id, parse_version_id(version_id)))


@router.post("/pending/abandon")
async def abandon_pending(request: Request, session: SessionDep) -> Response:
    body = await request.json()
    older = body.get("olderThanSeconds") if isinstance(body, dict) else None
    limit = body.get("limit", pending.MAX_BATCH) if isinstance(body, dict) else None
    if not isinstance(older, int) or older < 0 or not isinstance(limit, int) or limit < 1:
        raise ProblemError("abandon needs {'olderThanSeconds': n >= 0, 'limit': m >= 1?}.", code="invalid-abandon")
    return json_response({"blobIds": await pending.abandon(session, timedelta(seconds=older), limit)})


@router.post("/pending/forget")
async def forget_pending(request: Request, session: SessionDep) -> Response:
    body = await request.json()
    ids = body.get("blobIds") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ProblemError("forget needs {'blobIds': [...]}.", code="invalid-forget")
    return json_response({"forgotten": await pending.forget(session, ids)})


@router.post("/idempotency")
async def binary_idempotency(request: Request, caller: CallerDep, keyrings: KeyringsDep, resources: ResourcesDep) -> Response:
    body = await request.json()
    key = body.get("key") if isinstance(body, dict) else None
    digest = body.get("digest") if isinstance(body, dict) else None
    if not isinstance(key, str) or (digest is not None and not isinstance(digest, str)):
        raise ProblemError("idempotency needs {'key': '...', 'digest': '<hex>'?}.", code="invalid-idempotency")
    if not await idempotency.known(keyrings.session, caller.tenant, key):
        return Response(status_code=204)
    if digest is None:
        return json_response({"known": True})
    fingerprint = idempotency.request_hash(caller.tenant, key, "POST", "/fhir/Binary", idempotency.digest_body(digest))
    replay = await idempotency.find_replay(keyrings.session, caller.tenant, key, fingerprint)
    if replay is None:  # expired between the two calls
        return Response(status_code=204)
    first = replay.response
    response = written_response(await resources.vread(keyrings, first["type"], first["id"], first["version"]), replay.status)
    response.headers[idempotency.REPLAY_HEADER] = "1"
    return response
