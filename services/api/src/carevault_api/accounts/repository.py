"""Storage of users, their recovery codes and their links to patient records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_identity import RecoveryCode, Tenant, User, UserPatient


async def get_tenant(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def find_user(session: AsyncSession, tenant: str, username: str) -> User | None:
    result = await session.execute(select(User).where(User.tenant == tenant, User.username == username))
    return result.scalar_one_or_none()


async def find_user_to_sign_in(session: AsyncSession, tenant: str, username: str) -> User | None:
    """As :func:`find_user`, the account's row locked until the transaction ends
    (PostgreSQL; on SQLite a write session already holds the database's write lock)."""
    result = await session.execute(select(User).where(User.tenant == tenant, User.username == username).with_for_update())
    return result.scalar_one_or_none()


async def list_users(session: AsyncSession, tenant: str | None) -> list[User]:
    query = select(User).order_by(User.created_at)
    if tenant is not None:
        query = query.where(User.tenant == tenant)
    return list((await session.execute(query)).scalars())


async def record_failure(session: AsyncSession, user_id: str, failures: int, locked_until: datetime | None) -> None:
    await session.execute(update(User).where(User.id == user_id).values(failed_logins=failures, locked_until=locked_until))


async def record_success(session: AsyncSession, user_id: str) -> None:
    await session.execute(update(User).where(User.id == user_id).values(failed_logins=0, locked_until=None))


async def claim_totp_step(session: AsyncSession, user_id: str, step: int) -> bool:
    """Accept a TOTP time step only if it is later than the last one accepted (RFC 6238 §5.2)."""
    result = await session.execute(
        update(User).where(User.id == user_id, (User.totp_last_step.is_(None)) | (User.totp_last_step < step)).values(totp_last_step=step)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def set_totp(session: AsyncSession, user_id: str, secret: str | None) -> None:
    await session.execute(update(User).where(User.id == user_id).values(totp_secret=secret, totp_last_step=None))


async def set_totp_secret(session: AsyncSession, user_id: str, secret: str) -> None:
    """Replace the stored form of the same secret (resealing): the last step accepted is kept."""
    await session.execute(update(User).where(User.id == user_id).values(totp_secret=secret))


async def set_roles(session: AsyncSession, user_id: str, roles: str) -> None:
    await session.execute(update(User).where(User.id == user_id).values(roles=roles))


async def replace_recovery_codes(session: AsyncSession, user_id: str, hashes: list[str]) -> None:
    from sqlalchemy import delete

    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.add_all(RecoveryCode(user_id=user_id, code_hash=h, used_at=None) for h in hashes)
    await session.flush()


async def use_recovery_code(session: AsyncSession, user_id: str, code_hash: str, now: datetime) -> bool:
    result = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == code_hash, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def patients_of(session: AsyncSession, user_id: str) -> list[UserPatient]:
    result = await session.execute(select(UserPatient).where(UserPatient.user_id == user_id).order_by(UserPatient.relation.desc()))
    return list(result.scalars())


async def link_patient(session: AsyncSession, user_id: str, tenant: str, patient_id: str, relation: str) -> None:
    if await session.get(UserPatient, (user_id, patient_id)) is None:
        session.add(UserPatient(user_id=user_id, patient_id=patient_id, tenant=tenant, relation=relation))
        await session.flush()
