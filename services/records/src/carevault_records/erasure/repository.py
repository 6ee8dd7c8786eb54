"""All SQL of erasure: every row of one patient out, tombstones in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import CompoundSelect

from carevault_records.models import ErasureTombstone, IdempotencyRecord, Patient, Resource, ResourceVersion, SearchToken


def tombstone_digest(tenant: str, resource_type: str, resource_id: str) -> str:
    digest = hashlib.sha256()
    for part in (tenant, resource_type, resource_id):
        raw = part.encode()
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ErasedRows:
    resources: int
    versions: int
    tokens: int
    idempotency_records: int
    key_material: int


async def is_erased(session: AsyncSession, tenant: str, resource_type: str, resource_id: str) -> bool:
    digest = tombstone_digest(tenant, resource_type, resource_id)
    row = await session.execute(select(ErasureTombstone.digest).where(ErasureTombstone.tenant == tenant, ErasureTombstone.digest == digest))
    return row.first() is not None


def _of_patient(model: type[Resource] | type[ResourceVersion], patient_id: str) -> ColumnElement[bool]:
    return or_(model.patient_id == patient_id, and_(model.resource_type == "Patient", model.id == patient_id))


async def erase_patient(session: AsyncSession, tenant: str, patient_id: str, now: datetime) -> ErasedRows:
    """Delete every row of the patient (bodies, versions, heads, blind indexes, key
    material, idempotency answers naming them) and leave tombstones. Idempotent."""
    keys = (
        await session.execute(
            select(Resource.resource_type, Resource.id).where(Resource.tenant == tenant, _of_patient(Resource, patient_id))
        )
    ).all()
    ids = {patient_id} | {rid for _, rid in keys}
    tokens = await session.execute(delete(SearchToken).where(SearchToken.tenant == tenant, SearchToken.patient_id == patient_id))
    versions = await session.execute(
        delete(ResourceVersion).where(ResourceVersion.tenant == tenant, _of_patient(ResourceVersion, patient_id))
    )
    heads = await session.execute(delete(Resource).where(Resource.tenant == tenant, _of_patient(Resource, patient_id)))
    patients = await session.execute(delete(Patient).where(Patient.tenant == tenant, Patient.id == patient_id))
    # Idempotency answers keep locations only, but locations name the patient's
    # resources; the window is 24 hours, so the scan stays small.
    stale = [
        key
        for key, response in (
            await session.execute(select(IdempotencyRecord.key, IdempotencyRecord.response).where(IdempotencyRecord.tenant == tenant))
        ).all()
        if any(i in response for i in ids)
    ]
    if stale:
        await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.tenant == tenant, IdempotencyRecord.key.in_(stale)))
    tombstones = {tombstone_digest(tenant, "Patient", patient_id)} | {tombstone_digest(tenant, t, i) for t, i in keys}
    known = set(
        (
            await session.execute(
                select(ErasureTombstone.digest).where(ErasureTombstone.tenant == tenant, ErasureTombstone.digest.in_(list(tombstones)))
            )
        ).scalars()
    )
    fresh = tombstones - known
    if fresh:
        await session.execute(insert(ErasureTombstone), [{"tenant": tenant, "digest": d, "erased_at": now} for d in sorted(fresh)])
    return ErasedRows(
        resources=int(heads.rowcount),  # type: ignore[attr-defined]
        versions=int(versions.rowcount),  # type: ignore[attr-defined]
        tokens=int(tokens.rowcount),  # type: ignore[attr-defined]
        idempotency_records=len(stale),
        key_material=int(patients.rowcount),  # type: ignore[attr-defined]
    )


async def all_patients(session: AsyncSession) -> list[tuple[str, str]]:
    """Every (tenant, patient id) records holds anything of (for the erasure replay)."""
    query: CompoundSelect[Any] = union(
        select(Patient.tenant, Patient.id),
        select(Resource.tenant, Resource.patient_id).where(Resource.patient_id.is_not(None)),
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all() if row[1] is not None]
