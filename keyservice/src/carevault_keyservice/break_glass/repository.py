"""Storage of break-glass requests."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_keyservice.models import BreakGlassRequest


async def add(session: AsyncSession, request: BreakGlassRequest) -> None:
    session.add(request)
    await session.flush()


async def get(session: AsyncSession, request_id: str) -> BreakGlassRequest | None:
    result = await session.execute(select(BreakGlassRequest).where(BreakGlassRequest.id == request_id))
    return result.scalar_one_or_none()


async def get_for_update(session: AsyncSession, request_id: str) -> BreakGlassRequest | None:
    result = await session.execute(select(BreakGlassRequest).where(BreakGlassRequest.id == request_id).with_for_update())
    return result.scalar_one_or_none()


async def list_for_tenant(session: AsyncSession, tenant: str, limit: int = 200) -> list[BreakGlassRequest]:
    result = await session.execute(
        select(BreakGlassRequest).where(BreakGlassRequest.tenant == tenant).order_by(BreakGlassRequest.created_at.desc()).limit(limit)
    )
    return list(result.scalars())
