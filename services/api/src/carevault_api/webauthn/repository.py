"""Storage of WebAuthn credentials and of outstanding challenges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_identity import WebAuthnChallenge, WebAuthnCredential


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


async def take_challenge(session: AsyncSession, challenge_hash: str, purpose: str, user_id: str | None, now: datetime) -> bool:
    """Consume a challenge: True once, if it exists, is unexpired and was issued for this
    purpose (and user). Whatever the answer, it cannot be used again."""
    row = await session.get(WebAuthnChallenge, challenge_hash)
    if row is None:
        return False
    result = await session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.challenge_hash == challenge_hash))
    taken = bool(result.rowcount == 1)  # type: ignore[attr-defined]
    expires_at = row.expires_at if row.expires_at.tzinfo is not None else row.expires_at.replace(tzinfo=now.tzinfo)
    return taken and row.purpose == purpose and row.user_id == user_id and expires_at > now


async def prune_challenges(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at < now))


async def credentials_of(session: AsyncSession, user_id: str) -> list[WebAuthnCredential]:
    result = await session.execute(
        select(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id).order_by(WebAuthnCredential.created_at)
    )
    return list(result.scalars())


async def count_of(session: AsyncSession, user_id: str) -> int:
    result = await session.execute(select(func.count()).select_from(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id))
    return int(result.scalar_one())


async def by_hash(session: AsyncSession, credential_hash: str) -> WebAuthnCredential | None:
    result = await session.execute(select(WebAuthnCredential).where(WebAuthnCredential.credential_hash == credential_hash))
    return result.scalar_one_or_none()


async def advance_sign_count(session: AsyncSession, credential: WebAuthnCredential, new_count: int, now: datetime) -> bool:
    """Store the counter of an accepted assertion, only if it moved forward from the value
    the assertion was checked against (a concurrent use of the same counter loses); an
    authenticator without a counter (always 0) stays at 0."""
    moved = WebAuthnCredential.sign_count < new_count if new_count > 0 else WebAuthnCredential.sign_count == 0
    result = await session.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.id == credential.id, WebAuthnCredential.sign_count == credential.sign_count, moved)
        .values(sign_count=new_count, last_used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def remove(session: AsyncSession, user_id: str, credential_id: str) -> bool:
    result = await session.execute(
        delete(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id, WebAuthnCredential.id == credential_id)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
