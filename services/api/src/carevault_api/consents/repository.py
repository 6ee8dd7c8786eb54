"""Storage of consents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_identity import ConsentRecord


async def add(session: AsyncSession, record: ConsentRecord) -> None:
    session.add(record)
    await session.flush()


async def get(session: AsyncSession, consent_id: str) -> ConsentRecord | None:
    return await session.get(ConsentRecord, consent_id)


async def active_for(session: AsyncSession, grantee_id: str, patient_id: str, now: datetime) -> list[ConsentRecord]:
    result = await session.execute(
        select(ConsentRecord).where(
            ConsentRecord.grantee_id == grantee_id,
            ConsentRecord.patient_id == patient_id,
            ConsentRecord.status == "active",
            or_(ConsentRecord.expires_at.is_(None), ConsentRecord.expires_at > now),
        )
    )
    return list(result.scalars())


async def search(
    session: AsyncSession, *, tenant: str | None, patient_id: str | None, grantee_id: str | None, limit: int = 100
) -> list[ConsentRecord]:
    query = select(ConsentRecord).order_by(ConsentRecord.created_at.desc()).limit(limit)
    if tenant is not None:
        query = query.where(or_(ConsentRecord.tenant == tenant, ConsentRecord.grantee_tenant == tenant))
    if patient_id is not None:
        query = query.where(ConsentRecord.patient_id == patient_id)
    if grantee_id is not None:
        query = query.where(ConsentRecord.grantee_id == grantee_id)
    return list((await session.execute(query)).scalars())


async def set_status(session: AsyncSession, consent_id: str, status: str, now: datetime) -> None:
    await session.execute(
        update(ConsentRecord).where(ConsentRecord.id == consent_id).values(status=status, updated_at=now, version=ConsentRecord.version + 1)
    )
