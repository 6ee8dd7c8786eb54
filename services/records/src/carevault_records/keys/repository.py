"""Storage of patients' key material (verifier, wrapped keyring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_records.models import Patient

PATIENTS = Patient.__table__


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """What checks and opens one patient's key: verifier and wrapped keyring."""

    key_version: int
    verifier: bytes
    wrapped_keyring: bytes
    escrow_keyset: str


# Key material columns, for queries that fetch it together with a record.
KEY_MATERIAL_COLUMNS = (PATIENTS.c.key_version, PATIENTS.c.verifier, PATIENTS.c.wrapped_keyring, PATIENTS.c.escrow_keyset)

# Built once: the hot path pays neither expression building nor the ORM.
_KEY_MATERIAL = select(*KEY_MATERIAL_COLUMNS).where(PATIENTS.c.tenant == bindparam("tenant"), PATIENTS.c.id == bindparam("patient_id"))


def key_material(row: Any) -> KeyMaterial | None:
    """The key material of a row selected with :data:`KEY_MATERIAL_COLUMNS` (None: no patient row)."""
    if row.verifier is None:
        return None
    return KeyMaterial(row.key_version, row.verifier, row.wrapped_keyring, row.escrow_keyset)


async def get_key_material(session: AsyncSession, tenant: str, patient_id: str) -> KeyMaterial | None:
    connection = await session.connection()
    row = (await connection.execute(_KEY_MATERIAL, {"tenant": tenant, "patient_id": patient_id})).one_or_none()
    return key_material(row) if row is not None else None


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
