"""How a resource version becomes a stored row and back.

Patient data: the JSON body sealed under the patient's keyring, its associated
data binding tenant, patient, id, version and type; search terms become blind
indexes. Directory data: plain JSON and plain terms. Server metadata (version,
lastUpdated) lives in columns and is put back into ``meta`` on the way out.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson

from carevault_crypto import DecryptionError, PatientKeyring, RecordContext
from carevault_records.binaries.content import strip_content
from carevault_records.errors import INTEGRITY_FAILURES, IntegrityFailure
from carevault_records.fhir.search import extract_index_terms
from carevault_records.resources.repository import VersionRow

logger = logging.getLogger("carevault.records.integrity")

SERVER_META = ("versionId", "lastUpdated")


def strip_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    if isinstance(meta, dict) and any(k in meta for k in SERVER_META):
        rest = {k: v for k, v in meta.items() if k not in SERVER_META}
        resource = {**resource, "meta": rest} if rest else {k: v for k, v in resource.items() if k != "meta"}
    return resource


def with_server_meta(resource: dict[str, Any], version_id: int, last_updated: datetime) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = last_updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**resource, "meta": meta}


def encode_version(
    tenant: str,
    resource: dict[str, Any],
    *,
    version_id: int,
    patient_id: str | None,
    keyring: PatientKeyring | None,
    now: datetime,
) -> tuple[VersionRow, list[tuple[str, str]]]:
    """The row to store and its search tokens ``(param, token)``."""
    resource_type, resource_id = resource["resourceType"], resource["id"]
    body = orjson.dumps(strip_server_meta(resource))
    terms = extract_index_terms(resource)
    if keyring is not None:
        assert patient_id is not None
        sealed = keyring.seal_record(body, RecordContext(tenant, patient_id, resource_id, version_id, resource_type))
        tokens = [(t.param, keyring.blind_index(t.param, t.value)) for t in terms]
        return VersionRow(resource_type, resource_id, version_id, patient_id, False, True, now, sealed), tokens
    return VersionRow(resource_type, resource_id, version_id, None, False, False, now, body), [(t.param, t.value) for t in terms]


def deletion(resource_type: str, resource_id: str, version_id: int, patient_id: str | None, now: datetime) -> VersionRow:
    return VersionRow(resource_type, resource_id, version_id, patient_id, True, patient_id is not None, now, b"")


def public(resource: dict[str, Any]) -> dict[str, Any]:
    """What clients see of a stored resource: a Binary without its content reference."""
    return strip_content(resource) if resource.get("resourceType") == "Binary" else resource


def decode_version(tenant: str, stored: VersionRow, keyring: PatientKeyring | None, *, internal: bool = False) -> dict[str, Any]:
    """The resource as the client sent it, plus server meta. An integrity failure
    raises and returns nothing of the body. ``internal`` keeps what only records
    and api see (a Binary's content reference)."""
    if stored.encrypted:
        assert keyring is not None
        assert stored.patient_id is not None
        context = RecordContext(tenant, stored.patient_id, stored.id, stored.version_id, stored.resource_type)
        try:
            body = keyring.open_record(stored.body, context)
        except DecryptionError:
            INTEGRITY_FAILURES.labels(stored.resource_type).inc()
            logger.error(
                "integrity failure",
                extra={
                    "event": "integrity-failure",
                    "resource_type": stored.resource_type,
                    "resource_id": stored.id,
                    "version": stored.version_id,
                },
            )
            raise IntegrityFailure(f"{stored.resource_type}/{stored.id} version {stored.version_id} failed its integrity check.") from None
    else:
        body = stored.body
    resource = with_server_meta(orjson.loads(body), stored.version_id, stored.last_updated)
    return resource if internal else public(resource)
