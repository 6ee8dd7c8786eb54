"""Bulk re-escrow to a new hosting-doctor key, done offline by the doctor's tool:
export the packages sealed to an old key, let the tool rewrap them, upload the
result. keyservice checks each uploaded package's header against what it claims
and never replaces a package it already has."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.errors import ProblemError
from carevault_crypto import DecryptionError
from carevault_crypto.escrow import inspect_escrow_package
from carevault_keyservice.escrow import repository
from carevault_keyservice.escrow.doctor_keys import DoctorKeyDirectory


@dataclass(frozen=True, slots=True)
class UploadedPackage:
    tenant: str
    patient_id: str
    key_version: int
    doctor_key_id: str
    package_b64: str


@dataclass(frozen=True, slots=True)
class UploadResult:
    added: int
    already_present: int


class InvalidUpload(ProblemError):
    status, code, title = 422, "invalid-escrow-upload", "An uploaded escrow package does not match what it claims"


async def upload(session: AsyncSession, doctor_keys: DoctorKeyDirectory, packages: list[UploadedPackage]) -> UploadResult:
    active = {k.key_id for k in doctor_keys.keyset().keys}
    added = present = 0
    for index, item in enumerate(packages):
        try:
            raw = base64.b64decode(item.package_b64, validate=True)
            info = inspect_escrow_package(raw)
        except (binascii.Error, ValueError, DecryptionError) as exc:
            raise InvalidUpload(f"Package {index} is not a valid escrow package.") from exc
        claimed = (item.tenant, item.patient_id, item.key_version, item.doctor_key_id)
        actual = (info.context.tenant, info.context.patient_id, info.context.key_version, info.doctor_key_id)
        if claimed != actual:
            raise InvalidUpload(f"Package {index}: its header names another patient, key version or doctor key.")
        if item.doctor_key_id not in active:
            raise InvalidUpload(f"Package {index} is sealed to a doctor key that is not active here.")
        if not await repository.has_key_version(session, item.tenant, item.patient_id, item.key_version):
            raise InvalidUpload(f"Package {index}: no such patient key version is escrowed here.")
        try:
            async with session.begin_nested():
                await repository.add_package(
                    session,
                    tenant=item.tenant,
                    patient_id=item.patient_id,
                    key_version=item.key_version,
                    doctor_key_id=item.doctor_key_id,
                    package=raw,
                )
            added += 1
        except IntegrityError:
            present += 1
    return UploadResult(added, present)
