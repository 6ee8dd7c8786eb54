"""All SQL of blobs: which opaque ids are complete, and their sizes."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_fileservice.models import Blob


async def get(session: AsyncSession, blob_id: str) -> Blob | None:
    result = await session.execute(select(Blob).where(Blob.id == blob_id))
    return result.scalar_one_or_none()


async def insert(session: AsyncSession, blob_id: str, plaintext_size: int, stored_size: int) -> None:
    session.add(Blob(id=blob_id, plaintext_size=plaintext_size, stored_size=stored_size))
    await session.flush()


async def remove(session: AsyncSession, blob_id: str) -> bool:
    result = await session.execute(delete(Blob).where(Blob.id == blob_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
