"""Storage of OAuth2 clients, authorization codes and refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_identity import AuthorizationCode, OAuthClient, RefreshToken


async def get_client(session: AsyncSession, client_id: str) -> OAuthClient | None:
    return await session.get(OAuthClient, client_id)


async def list_clients(session: AsyncSession, tenant: str | None) -> list[OAuthClient]:
    query = select(OAuthClient).order_by(OAuthClient.created_at)
    if tenant is not None:
        query = query.where(OAuthClient.tenant == tenant)
    return list((await session.execute(query)).scalars())


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


async def set_client_disabled(session: AsyncSession, client_id: str, disabled: bool) -> None:
    await session.execute(update(OAuthClient).where(OAuthClient.client_id == client_id).values(disabled=disabled))


async def take_code(session: AsyncSession, code_hash: str) -> tuple[AuthorizationCode | None, bool]:
    """(the code, whether this call consumed it): a second use finds it used."""
    code = await session.get(AuthorizationCode, code_hash)
    if code is None:
        return None, False
    result = await session.execute(
        update(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash, AuthorizationCode.used.is_(False)).values(used=True)
    )
    return code, bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def get_refresh(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.get(RefreshToken, token_hash)


async def use_refresh(session: AsyncSession, token_hash: str, now: datetime) -> bool:
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None), RefreshToken.revoked.is_(False))
        .values(used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(update(RefreshToken).where(RefreshToken.family_id == family_id).values(revoked=True))


async def family_revoked(session: AsyncSession, family_id: str) -> bool:
    result = await session.execute(select(RefreshToken.token_hash).where(RefreshToken.family_id == family_id, RefreshToken.revoked))
    return result.first() is not None
