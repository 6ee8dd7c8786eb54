"""The written request documents: encrypted by fileservice under a file key of
api's own, one per document, kept sealed in api's database.

Why there: fileservice is the platform's store of encrypted files (streaming
AEAD, S3 in production, backed up with the rest), so a scanned letter of a few
megabytes stays out of api's database; api's sealed secrets
(carevault_api.secrets) are for small values, such as that file key. The
document's SHA-256 is bound into the request by keyservice: a document read back
must hash to it, or it is refused.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.break_glass import repository
from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.models_break_glass import BreakGlassDocument
from carevault_api.secrets import Secrets
from carevault_common.db import session_scope
from carevault_common.errors import ProblemError
from carevault_crypto import DecryptionError, FileKey
from carevault_crypto.export import file_key_to_transport

logger = logging.getLogger("carevault.api.break_glass")
DOCUMENT_KEY = "api/break-glass-document-key"


class DocumentIntegrity(ProblemError):
    status, code, title = 500, "document-integrity", "The stored request document does not match the request"


@dataclass(frozen=True, slots=True)
class StoredDocument:
    blob_id: str
    sealed_file_key: str
    sha256: str
    content_type: str
    size: int

    def row(self, request_id: str) -> BreakGlassDocument:
        return BreakGlassDocument(
            request_id=request_id,
            blob_id=self.blob_id,
            sealed_file_key=self.sealed_file_key,
            sha256=self.sha256,
            content_type=self.content_type,
            size=self.size,
            created_at=datetime.now(UTC),
        )


async def store(files: FileserviceClient, sealer: Secrets, content: bytes, content_type: str) -> StoredDocument:
    blob_id = secrets.token_hex(16)
    file_key = file_key_to_transport(FileKey.generate())
    await files.put_blob(blob_id, file_key, content, len(content))
    # Sealed to the blob: a key moved to another row does not open.
    sealed = sealer.seal(file_key, purpose=DOCUMENT_KEY, owner=blob_id)
    return StoredDocument(blob_id, sealed, hashlib.sha256(content).hexdigest(), content_type, len(content))


async def discard(files: FileserviceClient, blob_id: str) -> None:
    """Best effort, after the request could not be opened: the blob is unreadable
    without its key, which was never stored."""
    try:
        await files.delete_blob(blob_id)
    except ProblemError:
        logger.warning("orphan-blob", extra={"blob_id": blob_id})


async def read(files: FileserviceClient, sealer: Secrets, document: BreakGlassDocument, expected_sha256: str) -> bytes:
    try:
        file_key = sealer.open(document.sealed_file_key, purpose=DOCUMENT_KEY, owner=document.blob_id)
    except DecryptionError:
        raise DocumentIntegrity("The request document's key does not open.") from None
    content = await files.read_blob(document.blob_id, file_key)
    if not secrets.compare_digest(hashlib.sha256(content).hexdigest(), expected_sha256):
        raise DocumentIntegrity("The stored request document does not hash to the one bound into the request.")
    return content


async def reseal_keys(sessions: async_sessionmaker[AsyncSession], sealer: Secrets) -> int:
    """At start: file keys stored in clear (dev) or under the previous sealing key are
    sealed again under the current one, so that the previous key can be dropped after a
    rotation (docs/operations.md). Break-glass requests are few: all are looked at."""
    resealed = 0
    async with session_scope(sessions) as session:
        for document in await repository.all_documents(session):
            if sealer.needs_resealing(document.sealed_file_key):
                try:
                    file_key = sealer.open(document.sealed_file_key, purpose=DOCUMENT_KEY, owner=document.blob_id)
                except DecryptionError:
                    logger.warning("break-glass document key does not open", extra={"blob_id": document.blob_id})
                    continue
                await repository.set_sealed_key(
                    session, document.request_id, sealer.seal(file_key, purpose=DOCUMENT_KEY, owner=document.blob_id)
                )
                resealed += 1
    return resealed
