"""All SQL of the erasure journal (pseudonyms of erased patients, apart from the data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models import ErasureJournalEntry
from carevault_common.db import savepoint


@dataclass(frozen=True, slots=True)
class JournalEntry:
    tenant: str
    pseudonym: str
    requested_at: datetime
    completed_at: datetime | None


async def note_requested(session: AsyncSession, *, tenant: str, pseudonym: str, now: datetime, request_id: str | None) -> None:
    """Journal an erasure before anything is erased; a repeated request keeps the first entry."""
    try:
        async with savepoint(session):
            session.add(ErasureJournalEntry(tenant=tenant, pseudonym=pseudonym, requested_at=now, completed_at=None, request_id=request_id))
            await session.flush()
    except IntegrityError:
        pass


async def note_completed(session: AsyncSession, *, tenant: str, pseudonym: str, now: datetime) -> None:
    await session.execute(
        update(ErasureJournalEntry)
        .where(ErasureJournalEntry.tenant == tenant, ErasureJournalEntry.pseudonym == pseudonym)
        .values(completed_at=now)
    )


async def all_entries(session: AsyncSession) -> list[JournalEntry]:
    rows = await session.execute(select(ErasureJournalEntry).order_by(ErasureJournalEntry.requested_at))
    return [JournalEntry(e.tenant, e.pseudonym, e.requested_at, e.completed_at) for e in rows.scalars()]
