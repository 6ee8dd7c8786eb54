"""Storage of patients' key material (verifier, wrapped keyring)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_records.models import Patient


async def get_patient(session: AsyncSession, tenant: str, patient_id: str) -> Patient | None:
    result = await session.execute(select(Patient).where(Patient.tenant == tenant, Patient.id == patient_id))
    return result.scalar_one_or_none()


async def insert_patient(
    session: AsyncSession, *, tenant: str, patient_id: str, verifier: bytes, wrapped_keyring: bytes, escrow_keyset: str, now: datetime
) -> None:
    session.add(
        Patient(
            tenant=tenant,
            id=patient_id,
            key_version=1,
            verifier=verifier,
            wrapped_keyring=wrapped_keyring,
            escrow_keyset=escrow_keyset,
            updated_at=now,
        )
    )
    await session.flush()


async def replace_key(
    session: AsyncSession, patient: Patient, *, verifier: bytes, wrapped_keyring: bytes, escrow_keyset: str, now: datetime
) -> None:
    """Swap to a new key version, only if nobody rotated it meanwhile."""
    result = await session.execute(
        update(Patient)
        .where(Patient.tenant == patient.tenant, Patient.id == patient.id, Patient.key_version == patient.key_version)
        .values(
            key_version=patient.key_version + 1,
            verifier=verifier,
            wrapped_keyring=wrapped_keyring,
            escrow_keyset=escrow_keyset,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        from carevault_records.errors import VersionConflict

        raise VersionConflict("The patient key was rotated concurrently.")


async def set_escrow_keyset(session: AsyncSession, tenant: str, patient_id: str, key_version: int, keyset: str) -> None:
    await session.execute(
        update(Patient)
        .where(Patient.tenant == tenant, Patient.id == patient_id, Patient.key_version == key_version)
        .values(escrow_keyset=keyset)
        .execution_options(synchronize_session=False)
    )
