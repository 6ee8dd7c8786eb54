"""Binary resources inside transaction and batch Bundles.

records cannot reach fileservice, so api stores the content first: for each POST
or PUT entry whose resource is a Binary, its base64 ``data`` goes through the same
path as ``POST /fhir/Binary`` (prepare under the patient key, encrypt into a blob)
and the entry's resource is replaced by the Binary with its content extension.
records then processes the Bundle as usual. Afterwards every blob whose entry was
not written (a failed transaction, a failed batch entry) is deleted.

Limits: the Binary's ``securityContext`` must name an existing patient
(``Patient/{id}``); a ``urn:uuid:`` of a Patient created by the same transaction is
refused (422), because its key is registered only when records applies the Bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from carevault_api.binaries.service import BinaryService, upload_from_resource
from carevault_common.errors import FHIR_MEDIA_TYPE, ProblemError

BINARY_MARKER = b'"Binary"'


def mentions_binary(body: bytes) -> bool:
    return BINARY_MARKER in body


def _binary_id(entry: dict[str, Any]) -> str | None:
    url = str(entry.get("request", {}).get("url", ""))
    kind, _, rest = url.partition("/")
    return rest.split("/", 1)[0] or None if kind == "Binary" and rest else None


async def store_bundle_binaries(service: BinaryService, records_headers: Mapping[str, str], bundle: Any) -> dict[int, str]:
    """Store the content of every Binary written by the Bundle; returns {entry index: blob id}."""
    stored: dict[int, str] = {}
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entries, list):
        return stored
    try:
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                continue
            request = entry.get("request")
            method = request.get("method") if isinstance(request, dict) else None
            if entry["resource"].get("resourceType") != "Binary" or method not in ("POST", "PUT"):
                continue
            upload = upload_from_resource(entry["resource"], None)
            binary_id = _binary_id(entry) if method == "PUT" else None
            blob_id, resource = await service.store_content(records_headers, upload, binary_id)
            stored[index] = blob_id
            entry["resource"] = resource
    except BaseException:
        for blob_id in stored.values():
            await service.discard(blob_id)
        raise
    return stored


async def process_bundle(
    service: BinaryService, records_headers: Mapping[str, str], body: bytes, params: list[tuple[str, str]]
) -> Response:
    try:
        bundle = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProblemError("The body is not valid JSON.", code="invalid-json") from None
    stored = await store_bundle_binaries(service, records_headers, bundle)
    headers = {k: v for k, v in records_headers.items() if k != "content-type"} | {"content-type": FHIR_MEDIA_TYPE}
    try:
        resp = await service.records.request("POST", "/fhir", content=orjson.dumps(bundle), headers=headers, params=params)
    except BaseException:
        for blob_id in stored.values():
            await service.discard(blob_id)
        raise
    written = _written_entries(resp.body) if resp.ok and stored else set()
    for index, blob_id in stored.items():
        if index not in written:
            await service.discard(blob_id)
    kept = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "location", "etag", "last-modified")}
    return Response(resp.body, status_code=resp.status, headers=kept)


def _written_entries(response_body: bytes) -> set[int]:
    """Indexes of the response entries with a 2xx status (entries are in request order)."""
    try:
        entries = orjson.loads(response_body).get("entry", [])
    except (orjson.JSONDecodeError, AttributeError):
        return set()
    written = set()
    for index, entry in enumerate(entries):
        status = entry.get("response", {}).get("status") if isinstance(entry, dict) else None
        if isinstance(status, str) and status.startswith("2"):
            written.add(index)
    return written
