"""All SQL of FHIR resources: heads, versions and search tokens (SQLAlchemy Core,
so a bundle of hundreds of resources is a handful of statements)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_records.keys.repository import KEY_MATERIAL_COLUMNS, PATIENTS, KeyMaterial, key_material
from carevault_records.models import Resource, ResourceVersion, SearchToken


@dataclass(frozen=True, slots=True)
class Head:
    resource_type: str
    id: str
    patient_id: str | None
    version_id: int
    deleted: bool
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A resource version as stored (read back or about to be written)."""

    resource_type: str
    id: str
    version_id: int
    patient_id: str | None
    deleted: bool
    encrypted: bool
    last_updated: datetime
    body: bytes


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back naive; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _head(row: Any) -> Head:
    return Head(row.resource_type, row.id, row.patient_id, row.version_id, row.deleted, _utc(row.last_updated))


def _version(row: Any) -> VersionRow:
    return VersionRow(
        row.resource_type, row.id, row.version_id, row.patient_id, row.deleted, row.encrypted, _utc(row.last_updated), row.body
    )


@dataclass(frozen=True, slots=True)
class Current:
    """A resource's head, its current version, and its patient's key material
    (None for directory data), as one query reads them."""

    head: Head
    version: VersionRow
    key: KeyMaterial | None


_HEADS, _VERSIONS = Resource.__table__, ResourceVersion.__table__

# Built once, executed on the connection: a read is one round trip, without
# expression building or the ORM on the hot path.
_CURRENT = (
    select(
        _HEADS.c.patient_id,
        _HEADS.c.version_id,
        _HEADS.c.deleted,
        _VERSIONS.c.encrypted,
        _VERSIONS.c.last_updated,
        _VERSIONS.c.body,
        *KEY_MATERIAL_COLUMNS,
    )
    .select_from(
        _HEADS.join(
            _VERSIONS,
            and_(
                _VERSIONS.c.tenant == _HEADS.c.tenant,
                _VERSIONS.c.resource_type == _HEADS.c.resource_type,
                _VERSIONS.c.id == _HEADS.c.id,
                _VERSIONS.c.version_id == _HEADS.c.version_id,
            ),
        ).outerjoin(PATIENTS, and_(PATIENTS.c.tenant == _HEADS.c.tenant, PATIENTS.c.id == _HEADS.c.patient_id))
    )
    .where(_HEADS.c.tenant == bindparam("tenant"), _HEADS.c.resource_type == bindparam("resource_type"), _HEADS.c.id == bindparam("id"))
)


async def get_current(session: AsyncSession, tenant: str, resource_type: str, resource_id: str) -> Current | None:
    """Head, current version and key material of one resource, in one query."""
    connection = await session.connection()
    params = {"tenant": tenant, "resource_type": resource_type, "id": resource_id}
    row = (await connection.execute(_CURRENT, params)).one_or_none()
    if row is None:
        return None
    updated = _utc(row.last_updated)
    head = Head(resource_type, resource_id, row.patient_id, row.version_id, row.deleted, updated)
    version = VersionRow(resource_type, resource_id, row.version_id, row.patient_id, row.deleted, row.encrypted, updated, row.body)
    return Current(head, version, key_material(row))


async def get_head(session: AsyncSession, tenant: str, resource_type: str, resource_id: str, *, for_update: bool = False) -> Head | None:
    query = select(Resource).where(Resource.tenant == tenant, Resource.resource_type == resource_type, Resource.id == resource_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    return _head(row) if row is not None else None


async def get_version(session: AsyncSession, tenant: str, resource_type: str, resource_id: str, version_id: int) -> VersionRow | None:
    row = (
        await session.execute(
            select(ResourceVersion).where(
                ResourceVersion.tenant == tenant,
                ResourceVersion.resource_type == resource_type,
                ResourceVersion.id == resource_id,
                ResourceVersion.version_id == version_id,
            )
        )
    ).scalar_one_or_none()
    return _version(row) if row is not None else None


def _current_versions() -> Select[ResourceVersion]:
    """Versions joined to their head: the current one of each resource."""
    return select(ResourceVersion).join(
        Resource,
        and_(
            Resource.tenant == ResourceVersion.tenant,
            Resource.resource_type == ResourceVersion.resource_type,
            Resource.id == ResourceVersion.id,
            Resource.version_id == ResourceVersion.version_id,
        ),
    )


async def get_current_versions(session: AsyncSession, tenant: str, keys: Sequence[tuple[str, str]]) -> list[VersionRow]:
    """Current, non-deleted versions of (type, id) pairs, in the order given."""
    if not keys:
        return []
    query = _current_versions().where(
        ResourceVersion.tenant == tenant,
        tuple_(ResourceVersion.resource_type, ResourceVersion.id).in_(list(keys)),
        Resource.deleted.is_(False),
    )
    rows = {(v.resource_type, v.id): v for v in map(_version, (await session.execute(query)).scalars())}
    return [rows[key] for key in keys if key in rows]


def _versions_of(tenant: str, resource_type: str, resource_id: str, since: datetime | None) -> list[ColumnElement[bool]]:
    where = [ResourceVersion.tenant == tenant, ResourceVersion.resource_type == resource_type, ResourceVersion.id == resource_id]
    if since is not None:
        where.append(ResourceVersion.last_updated >= since)
    return where


async def history(
    session: AsyncSession,
    tenant: str,
    resource_type: str,
    resource_id: str,
    limit: int,
    since: datetime | None = None,
    before: int | None = None,
) -> list[VersionRow]:
    """Versions newest first: updated at or after ``since``, older than version ``before``."""
    where = _versions_of(tenant, resource_type, resource_id, since)
    if before is not None:
        where.append(ResourceVersion.version_id < before)
    rows = await session.execute(select(ResourceVersion).where(*where).order_by(ResourceVersion.version_id.desc()).limit(limit))
    return [_version(row) for row in rows.scalars()]


async def count_versions(session: AsyncSession, tenant: str, resource_type: str, resource_id: str, since: datetime | None = None) -> int:
    query = select(func.count()).select_from(ResourceVersion).where(*_versions_of(tenant, resource_type, resource_id, since))
    return int((await session.execute(query)).scalar_one())


async def insert_versions(session: AsyncSession, tenant: str, versions: Sequence[VersionRow]) -> None:
    """Write new versions and move their heads, in two or three statements."""
    if not versions:
        return
    await session.execute(
        insert(ResourceVersion),
        [
            {
                "tenant": tenant,
                "resource_type": v.resource_type,
                "id": v.id,
                "version_id": v.version_id,
                "patient_id": v.patient_id,
                "deleted": v.deleted,
                "encrypted": v.encrypted,
                "last_updated": v.last_updated,
                "body": v.body,
            }
            for v in versions
        ],
    )
    created = [v for v in versions if v.version_id == 1]
    if created:
        await session.execute(
            insert(Resource),
            [
                {
                    "tenant": tenant,
                    "resource_type": v.resource_type,
                    "id": v.id,
                    "patient_id": v.patient_id,
                    "version_id": 1,
                    "deleted": v.deleted,
                    "last_updated": v.last_updated,
                }
                for v in created
            ],
        )
    for v in versions:
        if v.version_id == 1:
            continue
        result = await session.execute(
            update(Resource)
            .where(
                Resource.tenant == tenant,
                Resource.resource_type == v.resource_type,
                Resource.id == v.id,
                Resource.version_id == v.version_id - 1,
            )
            .values(version_id=v.version_id, deleted=v.deleted, last_updated=v.last_updated)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            from carevault_records.errors import VersionConflict

            raise VersionConflict("The resource changed concurrently; retry with its current version.")


async def replace_tokens(
    session: AsyncSession, tenant: str, resource_type: str, resource_id: str, tokens: Iterable[tuple[str, str]], patient_id: str
) -> None:
    await session.execute(
        delete(SearchToken).where(
            SearchToken.tenant == tenant, SearchToken.resource_type == resource_type, SearchToken.resource_id == resource_id
        )
    )
    await insert_tokens(session, tenant, [(resource_type, resource_id, param, token, patient_id) for param, token in tokens])


async def insert_tokens(session: AsyncSession, tenant: str, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Rows of (resource_type, resource_id, param, token, patient_id); duplicates dropped."""
    unique = {(t, i, p, tok): pid for t, i, p, tok, pid in rows}
    if not unique:
        return
    await session.execute(
        insert(SearchToken),
        [
            {"tenant": tenant, "resource_type": t, "resource_id": i, "param": p, "token": tok, "patient_id": pid}
            for (t, i, p, tok), pid in unique.items()
        ],
    )


async def find_by_tokens(
    session: AsyncSession, tenant: str, resource_type: str, patient_id: str, required: Sequence[tuple[str, Sequence[str]]]
) -> set[str] | None:
    """Ids of ``resource_type`` having, for every (param, alternatives), one of the tokens.
    None when nothing is required (no restriction)."""
    ids: set[str] | None = None
    for param, alternatives in required:
        rows = await session.execute(
            select(SearchToken.resource_id).where(
                SearchToken.tenant == tenant,
                SearchToken.patient_id == patient_id,
                SearchToken.resource_type == resource_type,
                SearchToken.param == param,
                SearchToken.token.in_(list(alternatives)),
            )
        )
        found = set(rows.scalars())
        ids = found if ids is None else ids & found
        if not ids:
            return set()
    return ids


async def list_heads(
    session: AsyncSession,
    tenant: str,
    resource_type: str,
    *,
    patient_id: str | None,
    ids: set[str] | None,
    updated_bounds: Sequence[tuple[str, datetime]],
    descending: bool,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Head]:
    """Current, non-deleted heads in ``_lastUpdated`` order, keyset-paged."""
    query = select(Resource).where(Resource.tenant == tenant, Resource.resource_type == resource_type, Resource.deleted.is_(False))
    if patient_id is not None:
        query = query.where(Resource.patient_id == patient_id)
    if ids is not None:
        query = query.where(Resource.id.in_(list(ids)))
    comparators = {"gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__", "eq": "__eq__"}
    for op, bound in updated_bounds:
        query = query.where(getattr(Resource.last_updated, comparators[op])(bound))
    if after is not None:
        pivot = tuple_(Resource.last_updated, Resource.id)
        query = query.where(pivot < tuple_(*after) if descending else pivot > tuple_(*after))
    order = (Resource.last_updated.desc(), Resource.id.desc()) if descending else (Resource.last_updated.asc(), Resource.id.asc())
    rows = await session.execute(query.order_by(*order).limit(limit))
    return [_head(row) for row in rows.scalars()]


async def count_heads(session: AsyncSession, tenant: str, resource_type: str, patient_id: str | None) -> int:
    query = (
        select(func.count())
        .select_from(Resource)
        .where(Resource.tenant == tenant, Resource.resource_type == resource_type, Resource.deleted.is_(False))
    )
    if patient_id is not None:
        query = query.where(Resource.patient_id == patient_id)
    return int((await session.execute(query)).scalar_one())


async def patient_page(session: AsyncSession, tenant: str, patient_id: str, after: tuple[str, str] | None, limit: int) -> list[VersionRow]:
    """Current, non-deleted versions of the patient's records other than the Patient
    itself, in (type, id) order, keyset-paged (``$everything``)."""
    query = _current_versions().where(
        Resource.tenant == tenant,
        Resource.patient_id == patient_id,
        Resource.resource_type != "Patient",
        Resource.deleted.is_(False),
    )
    if after is not None:
        query = query.where(tuple_(Resource.resource_type, Resource.id) > tuple_(*after))
    rows = await session.execute(query.order_by(Resource.resource_type, Resource.id).limit(limit))
    return [_version(row) for row in rows.scalars()]


async def patient_versions_of_type(session: AsyncSession, tenant: str, patient_id: str, resource_type: str) -> list[VersionRow]:
    """Every stored (non-deletion) version of the patient's resources of one type (erasure)."""
    rows = await session.execute(
        select(ResourceVersion).where(
            ResourceVersion.tenant == tenant,
            ResourceVersion.patient_id == patient_id,
            ResourceVersion.resource_type == resource_type,
            ResourceVersion.deleted.is_(False),
        )
    )
    return [_version(row) for row in rows.scalars()]
