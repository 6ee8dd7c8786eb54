"""Storage of break-glass request documents (where each is, its sealed key)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_break_glass import BreakGlassDocument


async def add_document(session: AsyncSession, document: BreakGlassDocument) -> None:
    session.add(document)
    await session.flush()


async def get_document(session: AsyncSession, request_id: str) -> BreakGlassDocument | None:
    result = await session.execute(select(BreakGlassDocument).where(BreakGlassDocument.request_id == request_id))
    return result.scalar_one_or_none()


async def documents_of(session: AsyncSession, request_ids: list[str]) -> dict[str, BreakGlassDocument]:
    if not request_ids:
        return {}
    result = await session.execute(select(BreakGlassDocument).where(BreakGlassDocument.request_id.in_(request_ids)))
    return {d.request_id: d for d in result.scalars()}


async def all_documents(session: AsyncSession) -> list[BreakGlassDocument]:
    return list((await session.execute(select(BreakGlassDocument))).scalars())


async def set_sealed_key(session: AsyncSession, request_id: str, sealed: str) -> None:
    await session.execute(update(BreakGlassDocument).where(BreakGlassDocument.request_id == request_id).values(sealed_file_key=sealed))
