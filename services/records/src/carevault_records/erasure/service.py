"""Erasure of one patient (GDPR Art. 17), on api's request.

Escrow first: keyservice deletes the patient's escrow packages (records is its
only escrow caller, so erasure goes api -> records -> keyservice and keyservice's
allow-list stays as it is). If keyservice is unavailable nothing is erased (503)
and the caller retries. Then every row of the patient goes in the request's one
transaction: ciphertexts, versions, heads, blind indexes, verifier and wrapped
keyring, idempotency answers naming them; tombstones answer 410 from then on.
Both steps are idempotent, so a retry or a replay after a restore finishes the job.

Blobs: fileservice stores ciphertext under opaque ids and knows no owner; a
Binary's blob id and wrapped file key live only inside its sealed record. With the
patient key (optional on ``$erase``), records opens every Binary version of the
patient first and returns their blob ids: api asks fileservice to delete them.
Without it, the blobs stay, unreadable by anyone (their file keys were wrapped under
the keyring that is erased: crypto-shredding), and ``binaries_without_key`` says
how many Binary versions had content that could not be listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carevault_common.db import forget_deleted_pages, session_scope
from carevault_common.errors import NotFound
from carevault_crypto import PatientKey
from carevault_records.binaries.content import read_content
from carevault_records.erasure import repository
from carevault_records.erasure.repository import ErasedRows
from carevault_records.errors import PatientErased
from carevault_records.keys.service import PatientKeys
from carevault_records.resources import repository as resources
from carevault_records.resources.codec import decode_version


async def refuse_if_erased(session: AsyncSession, tenant: str, resource_type: str, resource_id: str) -> None:
    """410 for a resource that existed and was erased with its patient (Art. 17);
    call it where a resource is not found."""
    if await repository.is_erased(session, tenant, resource_type, resource_id):
        raise PatientErased(f"{resource_type}/{resource_id} was erased.")


@dataclass(frozen=True, slots=True)
class Erasure:
    rows: ErasedRows
    escrow_packages: int
    blobs: list[str]
    binaries_without_key: int


async def erase_patient(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    keys: PatientKeys,
    tenant: str,
    patient_id: str,
    key: PatientKey | None,
) -> Erasure:
    """Its own transactions (not the request's): once the erasure has committed, the
    write-ahead log is cleared of the erased pages before the answer goes back."""
    blobs: list[str] = []
    async with session_scope(sessions) as session:
        binaries = await resources.patient_versions_of_type(session, tenant, patient_id, "Binary")
        if key is not None and binaries:
            keyring = await keys.unlock(session, tenant, patient_id, key)  # a wrong key is refused before anything goes
            blobs = sorted({c.blob_id for v in binaries if (c := read_content(decode_version(tenant, v, keyring, internal=True)))})
    escrow = await keys.keyservice.forget(tenant=tenant, patient_id=patient_id)
    async with session_scope(sessions) as session:
        erased_before = await repository.is_erased(session, tenant, "Patient", patient_id)
        rows = await repository.erase_patient(session, tenant, patient_id, datetime.now(UTC))
        if not (erased_before or rows.key_material or rows.resources or escrow):
            raise NotFound("No such patient in this tenant.")  # rolls back: no tombstone for an id that never was
    await forget_deleted_pages(engine)
    return Erasure(rows, escrow, blobs, binaries_without_key=0 if key is not None else len(binaries))
