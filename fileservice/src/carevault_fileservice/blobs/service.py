"""Encrypt a stream into a blob, and decrypt a blob (or a byte range of it) back.

fileservice knows nothing of tenants, patients or file types: it gets an opaque
blob id and the file's key (``X-File-Key``, from api, over mTLS), and keeps the
key in memory for the request only. The associated data of the stream is the
blob id, so a blob cannot be served under another id.

Writes: plaintext -> :class:`StreamingEncryptor` -> storage writer, one segment
buffered; the blob becomes visible only when complete and durable, then its row
is committed. Reads: the stored size is checked against the row (truncation or
extension refused before anything is sent), the header is authenticated, then
only the segments covering the asked range are read, each authenticated before
any of its plaintext leaves (:class:`RandomAccessDecryptor`, with the segment
count known, so the last-segment flag is checked too).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.errors import NotFound, PayloadTooLarge
from carevault_crypto import DecryptionError, FileKey, RandomAccessDecryptor, SegmentRange, StreamingEncryptor, segments_for_range
from carevault_crypto.streaming import HEADER_SIZE, ciphertext_size
from carevault_fileservice.blobs import repository
from carevault_fileservice.blobs.ranges import ByteRange, parse_range
from carevault_fileservice.errors import (
    INTEGRITY_FAILURES,
    BlobExists,
    BlobIntegrityFailure,
    InvalidBlobId,
    MidStreamIntegrityFailure,
)
from carevault_fileservice.storage import BlobStore, StoredObjectMissing
from carevault_fileservice.storage.base import IO_CHUNK

logger = logging.getLogger("carevault.fileservice.blobs")

BLOB_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
TAG_SIZE = 16
# Plaintext decrypted and authenticated before the status line is sent: a blob (or
# range) up to this size fails with a clean 500 problem instead of an aborted transfer.
PREVERIFY_BYTES = 4 * 1024 * 1024
# Plaintext bytes gathered per response chunk.
OUT_CHUNK = 256 * 1024


def check_blob_id(blob_id: str) -> str:
    if not BLOB_ID.fullmatch(blob_id):
        raise InvalidBlobId()
    return blob_id


def associated_data(blob_id: str) -> bytes:
    """What every segment of a blob is bound to: its id."""
    return blob_id.encode("ascii")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    blob_id: str
    size: int
    stored_size: int


@dataclass(slots=True)
class BlobContent:
    """A response ready to send: status, headers, and the plaintext stream (its
    first chunks already decrypted and authenticated)."""

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    prefetched: list[bytes] = field(default_factory=list)


def _integrity_failure(blob_id: str, when: str) -> None:
    INTEGRITY_FAILURES.labels(when).inc()
    logger.error("integrity failure", extra={"event": "integrity-failure", "object": "blob", "blob_id": blob_id, "when": when})


class BlobService:
    def __init__(self, store: BlobStore, *, max_bytes: int, segment_size: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.segment_size = segment_size

    # -- write ----------------------------------------------------------------

    async def put(
        self, session: AsyncSession, blob_id: str, file_key: FileKey, body: AsyncIterator[bytes], declared_length: int | None
    ) -> StoredBlob:
        """Encrypt ``body`` into a new blob. On any failure (client gone, too large,
        storage error) nothing is left: no object, no row."""
        check_blob_id(blob_id)
        if declared_length is not None and declared_length > self.max_bytes:
            raise PayloadTooLarge(f"Files are limited to {self.max_bytes} bytes.")
        if await repository.get(session, blob_id) is not None or await self.store.size(blob_id) is not None:
            raise BlobExists()
        encryptor = StreamingEncryptor(file_key, associated_data(blob_id), segment_size=self.segment_size)
        writer = self.store.writer(blob_id)
        size = 0
        try:
            await writer.write(encryptor.header)
            async for chunk in body:
                size += len(chunk)
                if size > self.max_bytes:
                    raise PayloadTooLarge(f"Files are limited to {self.max_bytes} bytes.")
                for sealed in encryptor.update_segments(chunk):
                    await writer.write(sealed)
            await writer.write(encryptor.finalize())
            stored_size = await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        # The blob is durable; now its row. The commit is made here, not at the edge,
        # because a failed commit must take the stored object with it.
        try:
            await repository.insert(session, blob_id, size, stored_size)
            await session.commit()
        except BaseException:
            await asyncio.shield(self.store.delete(blob_id))
            raise
        return StoredBlob(blob_id, size, stored_size)

    async def delete(self, session: AsyncSession, blob_id: str) -> None:
        """Row first, then the object: a failure in between leaves an object no
        row points to (unreadable, swept), never a row without its object."""
        check_blob_id(blob_id)
        await repository.remove(session, blob_id)
        await session.commit()
        await self.store.delete(blob_id)

    # -- read -----------------------------------------------------------------

    async def open(self, session: AsyncSession, blob_id: str, file_key: FileKey, range_header: str | None) -> BlobContent:
        check_blob_id(blob_id)
        row = await repository.get(session, blob_id)
        if row is None:
            raise NotFound("No such blob.")
        size, stored_size = row.plaintext_size, row.stored_size
        if await self.store.size(blob_id) != stored_size:
            _integrity_failure(blob_id, "size")
            raise BlobIntegrityFailure()
        decryptor = await self._decryptor(blob_id, file_key)
        if ciphertext_size(size, segment_size=decryptor.segment_size) != stored_size:
            _integrity_failure(blob_id, "size")
            raise BlobIntegrityFailure()
        wanted = parse_range(range_header, size)
        headers = {"accept-ranges": "bytes"}
        if wanted is None:
            status, first = 200, ByteRange(0, size)
        else:
            status, first = 206, wanted
            headers["content-range"] = wanted.content_range(size)
        headers["content-length"] = str(first.length)
        stream = self._plaintext(blob_id, decryptor, size, first)
        prefetched: list[bytes] = []
        got = 0
        try:
            while got < min(first.length, PREVERIFY_BYTES) or (first.length == 0 and not prefetched):
                chunk = await anext(stream, None)
                if chunk is None:
                    break
                prefetched.append(chunk)
                got += len(chunk)
        except (DecryptionError, StoredObjectMissing):
            await stream.aclose()
            _integrity_failure(blob_id, "before-headers")
            raise BlobIntegrityFailure() from None
        return BlobContent(status, headers, self._guarded(blob_id, stream), prefetched)

    async def _decryptor(self, blob_id: str, file_key: FileKey) -> RandomAccessDecryptor:
        header = bytearray()
        try:
            async for chunk in self.store.read(blob_id, 0, HEADER_SIZE):
                header += chunk
            return RandomAccessDecryptor(file_key, associated_data(blob_id), bytes(header))
        except (DecryptionError, StoredObjectMissing):
            _integrity_failure(blob_id, "header")
            raise BlobIntegrityFailure() from None

    async def _segments(self, blob_id: str, rng: SegmentRange) -> AsyncIterator[tuple[int, memoryview | bytes]]:
        """The ciphertext segments ``first..last`` of the range, one at a time: views
        into what storage returned when a segment lies whole in one read (reads are
        whole numbers of segments, so usually), else gathered. A view is valid until
        the next one is asked for."""
        seg_ct = rng.segment_size + TAG_SIZE
        buf = bytearray()
        index = rng.first_segment
        reads = self.store.read(blob_id, rng.ciphertext_start, rng.ciphertext_end, seg_ct * max(1, IO_CHUNK // seg_ct))
        async for chunk in reads:
            view = memoryview(chunk)
            while index < rng.last_segment:
                if buf:
                    take = seg_ct - len(buf)
                    buf += view[:take]
                    view = view[take:]
                    if len(buf) < seg_ct:
                        break
                    yield index, bytes(buf)
                    buf.clear()
                elif len(view) >= seg_ct:
                    yield index, view[:seg_ct]
                    view = view[seg_ct:]
                else:
                    break
                index += 1
            buf += view
        yield index, bytes(buf)

    async def _plaintext(self, blob_id: str, decryptor: RandomAccessDecryptor, size: int, wanted: ByteRange) -> AsyncGenerator[bytes, None]:
        """Authenticated plaintext of ``wanted``; raises DecryptionError on the first bad segment."""
        if size == 0:
            # The empty file is one empty last segment: authenticate it all the same.
            tail = bytearray()
            async for chunk in self.store.read(blob_id, HEADER_SIZE, HEADER_SIZE + TAG_SIZE):
                tail += chunk
            decryptor.decrypt_segment(0, bytes(tail), True)
            return
        rng = segments_for_range(size, wanted.start, wanted.end, segment_size=decryptor.segment_size)
        remaining = rng.length
        pending: list[memoryview] = []
        gathered = 0
        async for index, ciphertext in self._segments(blob_id, rng):
            plain = decryptor.decrypt_segment(index, ciphertext, index == rng.segment_count - 1)
            view = memoryview(plain)
            if index == rng.first_segment:
                view = view[rng.skip :]
            view = view[:remaining]
            remaining -= len(view)
            pending.append(view)
            gathered += len(view)
            if gathered >= OUT_CHUNK:
                yield b"".join(pending)
                pending.clear()
                gathered = 0
        if remaining:
            raise DecryptionError  # the object ended early (it changed under us)
        if pending:
            yield b"".join(pending)

    async def _guarded(self, blob_id: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        except (DecryptionError, StoredObjectMissing):
            _integrity_failure(blob_id, "mid-stream")
            raise MidStreamIntegrityFailure() from None
