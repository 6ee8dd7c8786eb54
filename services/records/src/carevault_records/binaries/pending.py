"""Pending uploads: the blob ids handed out by ``/files/prepare`` whose Binary has
not committed yet (docs/security-files.md, "orphan sweep").

* ``open_upload`` (prepare) records the blob id before any byte is stored.
* ``close_upload`` runs in the transaction that commits the Binary pointing at the
  blob: it deletes the row, and refuses the commit if the row is gone or already
  claimed by a sweep (the blob may be deleted by now), so a Binary never points at
  a swept blob.
* ``abandon`` (the sweep, driven by api) claims rows older than the longest upload
  and returns the claimed blob ids; api deletes those blobs in fileservice, then
  ``forget`` drops the rows. A sweep that fails half-way finds them claimed next time.

Claiming and committing both go through the row (an UPDATE or DELETE with a
condition on ``abandoned_at``), so of a late commit and a sweep exactly one wins.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.errors import ProblemError
from carevault_records.models import PendingUpload

MAX_BATCH = 1000


class UploadExpired(ProblemError):
    status, code, title = 409, "upload-expired", "The upload took too long; its content was discarded"


async def open_upload(session: AsyncSession, blob_id: str) -> None:
    session.add(PendingUpload(blob_id=blob_id, created_at=datetime.now(UTC), abandoned_at=None))
    await session.flush()


async def close_upload(session: AsyncSession, blob_id: str) -> None:
    result = await session.execute(delete(PendingUpload).where(PendingUpload.blob_id == blob_id, PendingUpload.abandoned_at.is_(None)))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise UploadExpired("Send the content again.")


async def abandon(session: AsyncSession, older_than: timedelta, limit: int) -> list[str]:
    """Claim the uploads started before ``now - older_than``; every claimed blob id
    (this time's and earlier unfinished sweeps'), oldest first, at most ``limit``."""
    now = datetime.now(UTC)
    await session.execute(
        update(PendingUpload)
        .where(PendingUpload.created_at < now - older_than, PendingUpload.abandoned_at.is_(None))
        .values(abandoned_at=now)
    )
    claimed = await session.execute(
        select(PendingUpload.blob_id)
        .where(PendingUpload.abandoned_at.is_not(None))
        .order_by(PendingUpload.created_at)
        .limit(min(limit, MAX_BATCH))
    )
    return list(claimed.scalars())


async def forget(session: AsyncSession, blob_ids: list[str]) -> int:
    """Drop the rows of blobs that are gone (swept, or deleted after a failed write)."""
    if not blob_ids:
        return 0
    result = await session.execute(delete(PendingUpload).where(PendingUpload.blob_id.in_(blob_ids[:MAX_BATCH])))
    return int(result.rowcount)  # type: ignore[attr-defined]
