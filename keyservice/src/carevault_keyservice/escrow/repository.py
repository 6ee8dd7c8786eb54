"""Storage of escrow packages (HPKE-sealed patient keys); never a clear key."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_keyservice.models import EscrowPackage


async def doctor_keys_with_package(session: AsyncSession, tenant: str, patient_id: str, key_version: int) -> set[str]:
    rows = await session.execute(
        select(EscrowPackage.doctor_key_id).where(
            EscrowPackage.tenant == tenant, EscrowPackage.patient_id == patient_id, EscrowPackage.key_version == key_version
        )
    )
    return set(rows.scalars())


async def add_package(session: AsyncSession, *, tenant: str, patient_id: str, key_version: int, doctor_key_id: str, package: bytes) -> None:
    session.add(EscrowPackage(tenant=tenant, patient_id=patient_id, key_version=key_version, doctor_key_id=doctor_key_id, package=package))
    await session.flush()


async def latest_packages(session: AsyncSession, tenant: str, patient_id: str) -> list[EscrowPackage]:
    """The packages of the patient's newest key version, one per doctor key."""
    rows = await session.execute(
        select(EscrowPackage)
        .where(EscrowPackage.tenant == tenant, EscrowPackage.patient_id == patient_id)
        .order_by(EscrowPackage.key_version.desc())
    )
    packages = list(rows.scalars())
    if not packages:
        return []
    newest = packages[0].key_version
    return [p for p in packages if p.key_version == newest]


async def delete_patient(session: AsyncSession, tenant: str, patient_id: str) -> int:
    result = await session.execute(delete(EscrowPackage).where(EscrowPackage.tenant == tenant, EscrowPackage.patient_id == patient_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def packages_for_doctor_key(session: AsyncSession, doctor_key_id: str, after_id: int, limit: int) -> list[EscrowPackage]:
    rows = await session.execute(
        select(EscrowPackage)
        .where(EscrowPackage.doctor_key_id == doctor_key_id, EscrowPackage.id > after_id)
        .order_by(EscrowPackage.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def all_patients(session: AsyncSession) -> list[tuple[str, str]]:
    """Every (tenant, patient id) with a package (for the erasure replay)."""
    rows = await session.execute(select(EscrowPackage.tenant, EscrowPackage.patient_id).distinct())
    return [(tenant, patient_id) for tenant, patient_id in rows.all()]


async def coverage(session: AsyncSession) -> tuple[int, dict[str, int]]:
    """How many patient key versions are escrowed at all, and how many packages each
    doctor key has (at most one per key version: a key is complete when its count
    equals the first number)."""
    versions = select(EscrowPackage.tenant, EscrowPackage.patient_id, EscrowPackage.key_version).distinct().subquery()
    total = int((await session.execute(select(func.count()).select_from(versions))).scalar_one())
    rows = await session.execute(select(EscrowPackage.doctor_key_id, func.count()).group_by(EscrowPackage.doctor_key_id))
    return total, {str(key_id): int(count) for key_id, count in rows.all()}
