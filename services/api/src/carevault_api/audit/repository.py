"""All SQL of the audit trail: appends under the chain-head lock, queries,
checkpoints, retention."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models import AuditAnchor, AuditChainHead, AuditCheckpoint, AuditEvent
from carevault_common.auditchain import EventContent, event_hash
from carevault_common.db import savepoint

HEAD_ROW = 1


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str


async def lock_head(session: AsyncSession, lock_timeout_ms: int) -> Head:
    """Take the chain head for this transaction: no other append (in any replica)
    passes until it commits or rolls back."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks: a first write takes the database write lock,
        # before anything is read (so no stale snapshot is ever extended).
        await session.execute(update(AuditChainHead).where(AuditChainHead.id == HEAD_ROW).values(seq=AuditChainHead.seq))
    else:
        await session.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
    row = (
        await session.execute(select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == HEAD_ROW).with_for_update())
    ).one()
    return Head(int(row.seq), row.hash)


async def append_locked(session: AsyncSession, head: Head, contents: Sequence[EventContent]) -> Head:
    """Append events after ``head`` (which the caller locked), in order, and move the
    head: one INSERT of every row and one UPDATE, whatever their number."""
    rows = []
    for content in contents:
        seq = head.seq + 1
        chain_hash = event_hash(head.hash, seq, content)
        rows.append({"seq": seq, "prev_hash": head.hash, "hash": chain_hash, **dataclasses.asdict(content)})
        head = Head(seq, chain_hash)
    if rows:
        await session.execute(insert(AuditEvent), rows)
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == HEAD_ROW)
            .values(seq=head.seq, hash=head.hash, updated_at=rows[-1]["recorded_at"])
        )
    return head


async def get_head(session: AsyncSession) -> Head:
    row = (await session.execute(select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == HEAD_ROW))).one()
    return Head(int(row.seq), row.hash)


@dataclass(frozen=True, slots=True)
class EventFilter:
    tenant: str
    patient: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    principal: str | None = None
    events: Sequence[str] = ()
    recorded_bounds: Sequence[tuple[str, datetime]] = ()
    outcome_range: tuple[int, int] | None = None
    before_seq: int | None = None


async def find_events(session: AsyncSession, where: EventFilter, limit: int) -> list[AuditEvent]:
    """Matching events of one tenant, newest first, keyset-paged by seq."""
    query = select(AuditEvent).where(AuditEvent.tenant == where.tenant)
    if where.patient is not None:
        query = query.where(AuditEvent.patient == where.patient)
    if where.resource_type is not None:
        query = query.where(AuditEvent.resource_type == where.resource_type)
    if where.resource_id is not None:
        query = query.where(AuditEvent.resource_id == where.resource_id)
    if where.principal is not None:
        query = query.where(AuditEvent.principal == where.principal)
    if where.events:
        query = query.where(AuditEvent.event.in_(list(where.events)))
    comparators = {"gt": "__gt__", "ge": "__ge__", "lt": "__lt__", "le": "__le__"}
    for op, bound in where.recorded_bounds:
        query = query.where(getattr(AuditEvent.recorded_at, comparators[op])(bound))
    if where.outcome_range is not None:
        low, high = where.outcome_range
        query = query.where(AuditEvent.outcome >= low, AuditEvent.outcome <= high)
    if where.before_seq is not None:
        query = query.where(AuditEvent.seq < where.before_seq)
    rows = await session.execute(query.order_by(AuditEvent.seq.desc()).limit(limit))
    return list(rows.scalars())


async def get_event(session: AsyncSession, tenant: str, event_id: str) -> AuditEvent | None:
    row = await session.execute(select(AuditEvent).where(AuditEvent.tenant == tenant, AuditEvent.event_id == event_id))
    return row.scalar_one_or_none()


# -- checkpoints and retention ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    seq: int
    hash: str
    signed_at: datetime


async def last_checkpoint(session: AsyncSession) -> StoredCheckpoint | None:
    row = (
        await session.execute(
            select(AuditCheckpoint.seq, AuditCheckpoint.hash, AuditCheckpoint.signed_at).order_by(AuditCheckpoint.seq.desc()).limit(1)
        )
    ).first()
    return StoredCheckpoint(int(row.seq), row.hash, _utc(row.signed_at)) if row else None


async def add_checkpoint(session: AsyncSession, *, seq: int, chain_hash: str, signed_at: datetime, key_id: str, signature: bytes) -> bool:
    """False if another replica signed this head first."""
    try:
        async with savepoint(session):
            await session.execute(
                insert(AuditCheckpoint).values(seq=seq, hash=chain_hash, signed_at=signed_at, key_id=key_id, signature=signature)
            )
    except IntegrityError:
        return False
    return True


async def checkpoint_before(session: AsyncSession, cutoff: datetime, after_seq: int) -> StoredCheckpoint | None:
    """The newest checkpoint signed before ``cutoff`` and beyond ``after_seq``."""
    row = (
        await session.execute(
            select(AuditCheckpoint.seq, AuditCheckpoint.hash, AuditCheckpoint.signed_at)
            .where(AuditCheckpoint.signed_at < cutoff, AuditCheckpoint.seq > after_seq)
            .order_by(AuditCheckpoint.seq.desc())
            .limit(1)
        )
    ).first()
    return StoredCheckpoint(int(row.seq), row.hash, _utc(row.signed_at)) if row else None


async def anchor_seq(session: AsyncSession) -> int:
    row = (await session.execute(select(AuditAnchor.seq).where(AuditAnchor.id == HEAD_ROW))).first()
    return int(row.seq) if row else 0


async def prune_to(session: AsyncSession, checkpoint: StoredCheckpoint, now: datetime) -> int:
    """Delete the events up to a signed checkpoint and start the chain there.
    The checkpoint itself stays: it vouches for the new start."""
    result = await session.execute(delete(AuditEvent).where(AuditEvent.seq <= checkpoint.seq))
    await session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq < checkpoint.seq))
    await session.execute(delete(AuditAnchor))
    await session.execute(insert(AuditAnchor).values(id=HEAD_ROW, seq=checkpoint.seq, hash=checkpoint.hash, pruned_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]
