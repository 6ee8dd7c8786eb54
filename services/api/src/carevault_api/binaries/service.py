"""FHIR Binary: api orchestrates records (metadata, keys) and fileservice (content).

Write (POST, PUT), in this order, so that an interrupted upload leaves nothing:

1. records ``/files/prepare``: checks the patient key, returns a fresh blob id, the
   file key and the content extension (file key wrapped under the patient keyring).
   Nothing is stored.
2. fileservice ``PUT /blobs/{id}``: the body streams through, encrypted segment by
   segment; the blob becomes visible only when complete and durable. A client that
   goes away mid-upload leaves no blob and no row.
3. records ``POST /fhir/Binary`` (or PUT): the Binary with its content extension, in
   one transaction. If it fails (version conflict, key rotated, records down) the
   blob is deleted before the error is returned.

records keeps the blob id of step 1 as a *pending upload* until the Binary of
step 3 commits (in the same transaction). If api dies between 2 and 3, that entry
outlives every upload (``binary_upload_max_seconds``, which bounds each write), and
the orphan sweep (binaries/sweep.py) deletes the blob and then the entry. A failed
write deletes its blob and entry at once.

``Idempotency-Key`` on a create: the body is hashed while it streams (with its
content type, security context and other Binary elements) and records keeps the
key with the first answer. A key records already knows: the body is only hashed,
never stored, and the first answer comes back (or 422 for another body). A
duplicate racing the first: both store their content, the first commit wins, the
other gets the first answer (its blob deleted), or 409 if both commit at once.

Read: records ``/files/Binary/{id}`` (checks the patient key, unwraps the file key),
then fileservice ``GET /blobs/{id}`` streamed back with the stored Content-Type, or
the Binary resource with base64 ``data`` for FHIR JSON below a size limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from starlette.responses import Response, StreamingResponse

from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.clients.records import RecordsClient
from carevault_api.fhir.negotiation import Representation, choose, is_media_type
from carevault_common.clients import ForwardedBody, ServiceResponse
from carevault_common.errors import FHIR_MEDIA_TYPE, PayloadTooLarge, ProblemError, ServiceUnavailable, problem_from_peer
from carevault_common.proxy import RelayedBody

logger = logging.getLogger("carevault.api.binaries")

CONTENT_EXTENSION = "https://carevault.dev/fhir/StructureDefinition/binary-content"
_PATIENT_REF = re.compile(r"Patient/[A-Za-z0-9\-.]{1,64}")
# Headers of a raw Binary answer relayed from fileservice.
_RANGE_HEADERS = ("content-length", "content-range", "accept-ranges")


def _relayed(resp: ServiceResponse) -> Response:
    kept = {k: v for k, v in resp.headers.items() if k.lower() in ("location", "etag", "last-modified", "content-type")}
    return Response(resp.body, status_code=resp.status, headers=kept)


class SecurityContextRequired(ProblemError):
    status, code, title = 400, "security-context-required", "A Binary needs X-Security-Context: Patient/{id}"


class NotAcceptable(ProblemError):
    status, code, title = 406, "not-acceptable", "No acceptable representation"


class BinaryTooLargeForJson(ProblemError):
    status, code, title = 406, "binary-too-large-for-json", "This Binary is too large for a JSON representation"


def patient_reference(value: str | None) -> str:
    if value is None:
        raise SecurityContextRequired()
    if not _PATIENT_REF.fullmatch(value.strip()):
        raise ProblemError(
            "X-Security-Context (or Binary.securityContext) must be a local patient reference, Patient/{id}.",
            status=422,
            code="invalid-security-context",
        )
    return value.strip()


# Between api and records only: the digest of a Binary create sent with an
# Idempotency-Key, and the mark of an answer that is a replay of the first one.
CONTENT_DIGEST_HEADER = "x-carevault-content-digest"
REPLAY_HEADER = "x-carevault-idempotent-replay"


class UploadTooSlow(ProblemError):
    status, code, title = 408, "upload-too-slow", "The upload took longer than the server allows"


@dataclass(frozen=True, slots=True)
class Upload:
    content_type: str
    patient: str  # Patient/{id}
    body: AsyncIterable[bytes] | bytes
    length: int | None
    resource: dict[str, Any]  # Binary elements to keep (JSON form), without data


def request_digest(upload: Upload) -> Any:
    """A SHA-256 over what makes two Binary creates the same request, content to follow."""
    digest = hashlib.sha256()
    elements = {k: v for k, v in upload.resource.items() if k not in ("data", "id")}
    for part in (upload.content_type.encode(), upload.patient.encode(), orjson.dumps(elements, option=orjson.OPT_SORT_KEYS)):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest


def binary_resource(upload: Upload, extension: dict[str, Any], size: int, binary_id: str | None) -> dict[str, Any]:
    """The Binary records stores: the client's elements, the security context, and
    the content extension (its size filled in)."""
    ext = {**extension, "extension": [({**e, "valueString": str(size)} if e.get("url") == "size" else e) for e in extension["extension"]]}
    resource = {k: v for k, v in upload.resource.items() if k not in ("data", "id")}
    meta = dict(resource.get("meta") or {})
    kept = [e for e in meta.get("extension", []) if not (isinstance(e, dict) and e.get("url") == CONTENT_EXTENSION)]
    meta["extension"] = [*kept, ext]
    resource |= {
        "resourceType": "Binary",
        "contentType": upload.content_type,
        "securityContext": {"reference": upload.patient},
        "meta": meta,
    }
    if binary_id is not None:
        resource["id"] = binary_id
    return resource


def require_media_type(value: str, where: str) -> None:
    if not is_media_type(value):
        raise ProblemError(
            f"{where} must be a media type such as application/pdf or text/plain; charset=utf-8 (ASCII, at most 255 characters).",
            code="invalid-content-type",
        )


def parse_json_binary(body: bytes, header_patient: str | None) -> Upload:
    """A Binary resource sent as FHIR JSON."""
    try:
        resource = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProblemError("The body is not valid JSON.", code="invalid-json") from None
    return upload_from_resource(resource, header_patient)


def upload_from_resource(resource: Any, header_patient: str | None) -> Upload:
    """A Binary resource (a request body or a Bundle entry): its decoded data and the rest of it."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise ProblemError("The body must be a Binary resource.", code="invalid-binary")
    content_type = resource.get("contentType")
    if not isinstance(content_type, str) or not content_type:
        raise ProblemError("Binary.contentType is required.", code="invalid-binary")
    require_media_type(content_type, "Binary.contentType")
    context = resource.get("securityContext")
    reference = context.get("reference") if isinstance(context, dict) else None
    if header_patient is not None and reference is not None and header_patient.strip() != reference:
        raise ProblemError("X-Security-Context and Binary.securityContext differ.", code="invalid-security-context")
    patient = patient_reference(header_patient or (reference if isinstance(reference, str) else None))
    data = resource.get("data", "")
    if not isinstance(data, str):
        raise ProblemError("Binary.data must be a base64 string.", code="invalid-binary")
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProblemError("Binary.data is not valid base64.", code="invalid-binary") from None
    return Upload(content_type, patient, content, len(content), resource)


class BinaryService:
    def __init__(
        self, records: RecordsClient, files: FileserviceClient, *, max_bytes: int, json_limit: int, upload_max_seconds: float = 6 * 3600
    ) -> None:
        self.records, self.files = records, files
        self.max_bytes, self.json_limit = max_bytes, json_limit
        self._limit_message = f"Binary content is limited to {max_bytes} bytes."
        self.upload_max_seconds = upload_max_seconds

    # -- writes ---------------------------------------------------------------

    async def store_content(
        self, records_headers: Mapping[str, str], upload: Upload, binary_id: str | None, digest: Any = None
    ) -> tuple[str, dict[str, Any]]:
        """Steps 1 and 2: prepare under the patient key, stream to fileservice.
        Returns the blob id and the Binary to write. On failure nothing is left
        (the blob, if any, and the pending upload are deleted)."""
        prepared = await self.records.prepare_content(records_headers, upload.patient, binary_id)
        blob_id, file_key = prepared["blobId"], prepared["fileKey"]
        try:
            if isinstance(upload.body, bytes):
                if len(upload.body) > self.max_bytes:
                    raise PayloadTooLarge(self._limit_message)
                if digest is not None:
                    digest.update(upload.body)
                size = await self.files.put_blob(blob_id, file_key, upload.body, len(upload.body))
            else:
                body = ForwardedBody(upload.body, self.max_bytes, digest=digest, limit_message=self._limit_message)
                size = await self.files.put_blob(blob_id, file_key, body, upload.length)
        except BaseException:
            await self.discard(blob_id)
            raise
        return blob_id, binary_resource(upload, prepared["contentExtension"], size, binary_id)

    async def discard(self, blob_id: str) -> None:
        """Best effort, even when the request is being cancelled: delete a blob whose
        Binary was not written (it may not exist), then its pending upload. What fails
        here is left to the orphan sweep."""

        async def both() -> None:
            await self.files.delete_blob(blob_id)
            await self.records.forget_pending_uploads([blob_id])

        try:
            await asyncio.shield(both())
        except (ProblemError, aiohttp.ClientError, TimeoutError):
            logger.warning("blob of a failed Binary write left to the orphan sweep", extra={"event": "orphan-blob", "blob_id": blob_id})

    async def write(
        self,
        records_headers: Mapping[str, str],
        upload: Upload,
        binary_id: str | None,
        if_match: str | None = None,
        idempotency_key: str | None = None,
    ) -> Response:
        headers = {k: v for k, v in records_headers.items() if k not in ("content-type", "accept", "idempotency-key")}
        digest = None
        if idempotency_key is not None and binary_id is None:
            if await self.records.idempotent_binary(headers, idempotency_key, None) is not None:
                return await self._replay(headers, upload, idempotency_key)
            digest = request_digest(upload)
        try:
            async with asyncio.timeout(self.upload_max_seconds):
                blob_id, resource = await self.store_content(headers, upload, binary_id, digest)
        except TimeoutError:
            raise UploadTooSlow(f"A Binary write may take at most {self.upload_max_seconds:.0f} s; nothing was stored.") from None
        headers["content-type"] = FHIR_MEDIA_TYPE
        if if_match is not None:
            headers["if-match"] = if_match
        if digest is not None:
            headers |= {"idempotency-key": str(idempotency_key), CONTENT_DIGEST_HEADER: digest.hexdigest()}
        method, path = ("POST", "/fhir/Binary") if binary_id is None else ("PUT", f"/fhir/Binary/{binary_id}")
        try:
            resp = await self.records.request(method, path, content=orjson.dumps(resource), headers=headers)
        except BaseException:
            await self.discard(blob_id)
            raise
        if not resp.ok or REPLAY_HEADER in resp.headers:
            # Refused, or a duplicate that committed first: this content is not needed.
            await self.discard(blob_id)
        return _relayed(resp)

    async def _replay(self, headers: dict[str, str], upload: Upload, idempotency_key: str) -> Response:
        """A create whose Idempotency-Key records knows: hash the body (nothing is
        stored) and answer as the first time, or 422 if the body differs."""
        digest = request_digest(upload)
        if isinstance(upload.body, bytes):
            digest.update(upload.body)
        else:
            async for _ in ForwardedBody(upload.body, self.max_bytes, digest=digest, limit_message=self._limit_message):
                pass
        resp = await self.records.idempotent_binary(headers, idempotency_key, digest.hexdigest())
        if resp is None:  # the first request's record expired meanwhile: rare; the client retries
            raise ServiceUnavailable("The Idempotency-Key expired during the request; send it again.")
        return _relayed(resp)

    # -- reads ----------------------------------------------------------------

    async def read(
        self,
        records_headers: Mapping[str, str],
        binary_id: str,
        version_id: str | None,
        *,
        accept: str | None,
        format_param: str | None,
        byte_range: str | None,
        check_patient: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> Response:
        opened, reported_patient = await self.records.open_binary(records_headers, binary_id, version_id)
        if check_patient is not None:
            # A read by id: records says whose Binary it is; authorize that before anything is sent.
            await check_patient(reported_patient)
        content_type = str(opened["contentType"])
        representation = choose(accept, content_type, format_param)
        common = {"etag": f'W/"{opened["versionId"]}"', "x-content-type-options": "nosniff"}
        if representation is None:
            raise NotAcceptable(f"This Binary is {content_type}; ask for it, for */*, or for application/fhir+json.")
        if representation is Representation.RESOURCE:
            size = int(opened["size"])
            if size > self.json_limit:
                raise BinaryTooLargeForJson(
                    f"This Binary is {size} bytes; JSON carries at most {self.json_limit}. Ask for {content_type} (Range is supported)."
                )
            content = await self.files.read_blob(opened["blobId"], opened["fileKey"])
            resource = {**opened["resource"], "data": base64.b64encode(content).decode("ascii")}
            return Response(orjson.dumps(resource), media_type=FHIR_MEDIA_TYPE, headers=common)
        upstream = await self.files.open_blob(opened["blobId"], opened["fileKey"], byte_range)
        if upstream.status not in (200, 206):
            try:
                payload = await upstream.read()
            finally:
                upstream.release()
            error = problem_from_peer(upstream.status, payload, self.files.peer)
            if upstream.status == 416 and "content-range" in upstream.headers:
                error.headers = {"content-range": upstream.headers["content-range"]}
            raise error
        headers = common | {k: upstream.headers[k] for k in _RANGE_HEADERS if k in upstream.headers}

        # The stored type exactly as sent (media_type= would add a charset to text/*).
        headers["content-type"] = content_type
        # A failure upstream (fileservice aborted: a segment failed authentication) aborts
        # the client's connection too (RelayedBody): never a complete-looking transfer.
        return StreamingResponse(RelayedBody(upstream), status_code=upstream.status, headers=headers)
