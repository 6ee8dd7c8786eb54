"""Storage of api's token-signing keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_identity import SigningKey


async def all_keys(session: AsyncSession) -> list[SigningKey]:
    return list((await session.execute(select(SigningKey).order_by(SigningKey.created_at))).scalars())


async def insert(session: AsyncSession, key: SigningKey) -> None:
    session.add(key)
    await session.flush()


async def promote_next(session: AsyncSession, next_kid: str, current_kid: str | None, now: datetime) -> bool:
    """next -> current and current -> retired, only if nobody did it meanwhile."""
    result = await session.execute(
        update(SigningKey).where(SigningKey.kid == next_kid, SigningKey.status == "next").values(status="current", activated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if current_kid is not None:
        await session.execute(update(SigningKey).where(SigningKey.kid == current_kid).values(status="retired", retired_at=now))
    return True


async def drop_retired_before(session: AsyncSession, cutoff: datetime) -> None:
    await session.execute(delete(SigningKey).where(SigningKey.status == "retired", SigningKey.retired_at < cutoff))


async def set_private_jwk(session: AsyncSession, kid: str, private_jwk: str) -> None:
    await session.execute(update(SigningKey).where(SigningKey.kid == kid).values(private_jwk=private_jwk))
