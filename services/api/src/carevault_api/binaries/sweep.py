"""The orphan sweep: blobs whose Binary never committed (docs/security-files.md).

records keeps each blob id it hands out as a pending upload until the Binary that
points at it commits. An entry older than the longest allowed write
(``binary_upload_max_seconds``) plus a grace can only belong to a write that will
never commit (api died between storing the content and committing the Binary, or
could not delete the blob after a failure). Each pass, in this order:

1. records claims those entries (a late commit of the same blob is refused from then
   on) and returns their blob ids;
2. fileservice deletes each blob (no error if it is not there: an upload cut off
   before it completed left none);
3. records forgets the entries of the blobs deleted.

A pass cut short anywhere is finished by a later one (claimed entries stay claimed).
fileservice learns nothing new: it is asked to delete opaque ids, as for any delete.
Every api replica runs the sweep; the steps are idempotent, so they may overlap.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.clients.records import RecordsClient
from carevault_common.errors import ProblemError

logger = logging.getLogger("carevault.api.binaries.sweep")

BATCH = 200


class OrphanSweeper:
    def __init__(self, records: RecordsClient, files: FileserviceClient, *, older_than_seconds: int) -> None:
        self.records, self.files = records, files
        self.older_than_seconds = older_than_seconds

    async def sweep_once(self) -> int:
        """One pass; returns how many orphan blobs (or leftover entries) were cleared."""
        cleared = 0
        while True:
            claimed = await self.records.abandon_pending_uploads(self.older_than_seconds, BATCH)
            deleted = []
            for blob_id in claimed:
                try:
                    await self.files.delete_blob(blob_id)
                except ProblemError as exc:
                    logger.warning("orphan blob not deleted; next pass", extra={"blob_id": blob_id, "problem": exc.code})
                    continue
                deleted.append(blob_id)
            if deleted:
                await self.records.forget_pending_uploads(deleted)
                logger.info("orphan blobs swept", extra={"event": "orphan-sweep", "count": len(deleted)})
            cleared += len(deleted)
            if len(claimed) < BATCH or len(deleted) < len(claimed):
                return cleared

    async def run(self, interval_seconds: float) -> None:
        """A pass at start, then one every ``interval_seconds`` (0: never)."""
        if interval_seconds <= 0:
            return
        while True:
            try:
                await self.sweep_once()
            except (ProblemError, aiohttp.ClientError, TimeoutError) as exc:
                # records or fileservice not there yet (start) or down: try again later.
                logger.warning("orphan sweep failed; next pass", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(interval_seconds)
