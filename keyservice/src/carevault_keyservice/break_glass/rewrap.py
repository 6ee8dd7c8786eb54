"""Bulk re-escrow to a new hosting-doctor key, done offline by the doctor's tool:
export the packages sealed to an old key, let the tool rewrap them, upload the
result. keyservice checks each uploaded package's header against what it claims
and never replaces a package it already has. One upload is one transaction: a bad
package stores none of them."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.errors import Conflict, ProblemError
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
    seen: set[tuple[str, str, int, str]] = set()
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
        escrowed_to = await repository.doctor_keys_with_package(session, item.tenant, item.patient_id, item.key_version)
        if not escrowed_to:
            raise InvalidUpload(f"Package {index}: no such patient key version is escrowed here.")
        # No savepoint per package: on SQLite (pysqlite), a SAVEPOINT opened before the
        # transaction's first write starts the transaction itself and its RELEASE commits,
        # so a later bad package would leave the earlier ones stored. Known packages are
        # skipped by a read instead; one added meanwhile (escrow on use) fails the whole
        # upload with a 409, and repeating it is safe.
        if item.doctor_key_id in escrowed_to or claimed in seen:
            present += 1
            continue
        seen.add(claimed)
        try:
            await repository.add_package(
                session,
                tenant=item.tenant,
                patient_id=item.patient_id,
                key_version=item.key_version,
                doctor_key_id=item.doctor_key_id,
                package=raw,
            )
        except IntegrityError:
            raise Conflict("An escrow package was added meanwhile; repeat the upload (nothing was stored).") from None
        added += 1
    return UploadResult(added, present)
