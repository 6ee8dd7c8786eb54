"""Erasure of one patient (GDPR Art. 17): ``POST /fhir/Patient/{id}/$erase``.

1. Journal it: the patient's pseudonym goes into the erasure journal (api's own
   table, apart from the data), committed before anything is erased.
2. Audit the attempt (``fhir.erase.attempt``): fail closed, nothing erased if it
   cannot be stored.
3. records erases every row of the patient and, first, asks keyservice to delete
   the escrow packages (api -> records -> keyservice: records is keyservice's only
   escrow caller, and keyservice's allow-list stays as it is).
4. fileservice deletes the patient's blobs, whose ids records returns when the
   request carried the patient key (a Binary's blob id is sealed in its record).
   Without the key the blobs stay, unreadable by anyone: their file keys were
   wrapped under the keyring records just erased (``binaries_without_key`` counts them).
5. The journal entry is marked done and ``fhir.erase`` (the tombstone: counts, no
   content) is stored.

Every step is idempotent: a failed erasure (503) is retried as it is, and
``carevault erasure replay`` applies the journal again after a restore.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from carevault_api.audit.service import Actor, AuditTrail
from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.clients.records import RecordsClient
from carevault_api.erasure import repository
from carevault_common.db import session_scope
from carevault_common.errors import ProblemError
from carevault_common.logging import request_id_var

logger = logging.getLogger("carevault.api.erasure")


async def erase_patient(
    trail: AuditTrail, records: RecordsClient, files: FileserviceClient, actor: Actor, patient_id: str, patient_key: str | None
) -> dict[str, Any]:
    pseudonym = trail.pseudonym(actor.tenant, patient_id)
    async with session_scope(trail.sessions) as session:
        await repository.note_requested(
            session, tenant=actor.tenant, pseudonym=pseudonym, now=datetime.now(UTC), request_id=request_id_var.get() or None
        )
    await trail.append("fhir.erase.attempt", actor, outcome=None, resource_type="Patient", resource_id=patient_id)
    try:
        erased = await records.erase_patient(
            tenant=actor.tenant, principal=actor.subject or "", patient_id=patient_id, patient_key=patient_key
        )
        blobs = [b for b in erased.get("blobs", []) if isinstance(b, str)]
        await delete_blobs(files, blobs)
    except ProblemError as failed:
        await trail.append("fhir.erase", actor, outcome=failed.status, resource_type="Patient", resource_id=patient_id)
        raise
    async with session_scope(trail.sessions) as session:
        await repository.note_completed(session, tenant=actor.tenant, pseudonym=pseudonym, now=datetime.now(UTC))
    counts = {k: int(v) for k, v in erased.get("erased", {}).items()} | {"escrow_packages": int(erased.get("escrow_packages", 0))}
    counts["blobs"] = len(blobs)
    counts["binaries_without_key"] = int(erased.get("binaries_without_key", 0))
    await trail.append("fhir.erase", actor, outcome=200, resource_type="Patient", resource_id=patient_id, details=counts)
    # A second copy of the journal entry, in the log stream (shipped off the cluster):
    # `carevault erasure replay --journal` takes these lines if api's database is lost too.
    logger.info("patient erased", extra={"tenant": actor.tenant, "pseudonym": pseudonym, "counts": counts})
    return counts


async def delete_blobs(files: FileserviceClient, blob_ids: list[str]) -> None:
    """Ask fileservice to delete each blob; one already gone (404) is done."""
    for blob_id in blob_ids:
        try:
            await files.delete_blob(blob_id)
        except ProblemError as failed:
            if failed.status != 404:
                raise
