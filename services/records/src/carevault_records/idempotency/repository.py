"""Storage of idempotency records (status and locations only, no content)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_records.models import IdempotencyRecord


async def get(session: AsyncSession, tenant: str, key: str, not_before: datetime) -> IdempotencyRecord | None:
    result = await session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant == tenant, IdempotencyRecord.key == key, IdempotencyRecord.created_at >= not_before
        )
    )
    return result.scalar_one_or_none()


async def put(
    session: AsyncSession, *, tenant: str, key: str, request_hash: str, status: int, response: str, now: datetime, expired_before: datetime
) -> None:
    # An expired record with the same key is replaced; a live one (a duplicate that
    # committed meanwhile) is not: the insert then fails on the primary key.
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.tenant == tenant, IdempotencyRecord.key == key, IdempotencyRecord.created_at < expired_before
        )
    )
    session.add(IdempotencyRecord(tenant=tenant, key=key, request_hash=request_hash, status=status, response=response, created_at=now))
    await session.flush()


async def purge_expired(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < before))
