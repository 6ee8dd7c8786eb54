"""Escrow: seal a patient key to every active hosting-doctor key; keep only that."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import savepoint
from carevault_crypto import PatientKey
from carevault_crypto.escrow import EscrowContext, seal_escrow
from carevault_keyservice.escrow import repository
from carevault_keyservice.escrow.doctor_keys import DoctorKeyDirectory


class NoDoctorKey(Exception):
    """No hosting-doctor key is configured: escrow would protect nothing."""


async def escrow_patient_key(
    session: AsyncSession, doctor_keys: DoctorKeyDirectory, *, tenant: str, patient_id: str, key_version: int, key: PatientKey
) -> str:
    """Idempotent: only doctor keys without a package for this key version get one.
    Returns the id of the keyset the key is now escrowed to."""
    keyset = doctor_keys.keyset()
    if not keyset.keys:
        raise NoDoctorKey()
    done = await repository.doctor_keys_with_package(session, tenant, patient_id, key_version)
    context = EscrowContext(tenant=tenant, patient_id=patient_id, key_version=key_version)
    for doctor_key in keyset.keys:
        if doctor_key.key_id in done:
            continue
        package = seal_escrow(doctor_key, key, context)
        try:
            async with savepoint(session):
                await repository.add_package(
                    session, tenant=tenant, patient_id=patient_id, key_version=key_version, doctor_key_id=doctor_key.key_id, package=package
                )
        except IntegrityError:
            continue  # a concurrent escrow of the same key stored it first
    return keyset.id
