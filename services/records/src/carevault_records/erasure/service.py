"""Erasure of one patient (GDPR Art. 17), on api's request.

Escrow first: keyservice deletes the patient's escrow packages (records is its
only escrow caller, so erasure goes api -> records -> keyservice and keyservice's
allow-list stays as it is). If keyservice is unavailable nothing is erased (503)
and the caller retries. Then every row of the patient goes in the request's one
transaction: ciphertexts, versions, heads, blind indexes, verifier and wrapped
keyring, idempotency answers naming them; tombstones answer 410 from then on.
Both steps are idempotent, so a retry or a replay after a restore finishes the job.

Blobs: fileservice stores ciphertext under opaque ids and knows no owner; the ids
of a patient's blobs live in their records (Binary, with the files issue). When
Binary lands, collect them here before the rows go and return them in ``blobs``:
api asks fileservice to delete them (carevault_api.erasure.service).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from carevault_common.db import forget_deleted_pages, session_scope
from carevault_common.errors import NotFound
from carevault_records.clients.keyservice import KeyserviceClient
from carevault_records.erasure import repository
from carevault_records.erasure.repository import ErasedRows


@dataclass(frozen=True, slots=True)
class Erasure:
    rows: ErasedRows
    escrow_packages: int
    blobs: list[str]


async def erase_patient(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keyservice: KeyserviceClient, tenant: str, patient_id: str
) -> Erasure:
    """Its own transaction (not the request's): once it has committed, the write-ahead
    log is cleared of the erased pages before the answer goes back."""
    escrow = await keyservice.forget(tenant=tenant, patient_id=patient_id)
    async with session_scope(sessions) as session:
        erased_before = await repository.is_erased(session, tenant, "Patient", patient_id)
        rows = await repository.erase_patient(session, tenant, patient_id, datetime.now(UTC))
        if not (erased_before or rows.key_material or rows.resources or escrow):
            raise NotFound("No such patient in this tenant.")  # rolls back: no tombstone for an id that never was
    await forget_deleted_pages(engine)
    return Erasure(rows, escrow, blobs=[])
