"""Blobs as files in a local directory (the embedded default; a ReadWriteMany
volume when several replicas share it).

An upload is written to ``incoming/<id>.<random>.part``, flushed and fsynced,
then renamed atomically to ``objects/<id[:2]>/<id>`` and the directory fsynced:
a reader sees the whole blob or nothing, and after a power cut a committed blob
is still there. Temporary files left by a crash are never visible under an id;
they are removed at start once older than the grace period (a younger one may
be another replica's upload in progress).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from carevault_fileservice.storage.base import IO_CHUNK, BlobStore, BlobWriter, StoredObjectMissing

logger = logging.getLogger("carevault.fileservice.storage")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write every part, in order, with as few system calls as the kernel allows."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


_IOV_MAX = 512


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore, blob_id: str) -> None:
        self._store = store
        self._final = store.object_path(blob_id)
        self._temp = store.incoming / f"{blob_id}.{secrets.token_hex(8)}.part"
        self._file: BinaryIO | None = None
        # Written as they come (no copy into one buffer), about IO_CHUNK at a time.
        self._parts: list[bytes] = []
        self._pending = 0
        self._size = 0
        self._done = False

    def _open(self) -> BinaryIO:
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return os.fdopen(fd, "wb", buffering=0)

    async def _flush_buffer(self) -> None:
        if not self._parts:
            return
        if self._file is None:
            self._file = await asyncio.to_thread(self._open)
        parts, self._parts, self._pending = self._parts, [], 0
        await asyncio.to_thread(_write_all, self._file.fileno(), parts)

    async def write(self, data: bytes) -> None:
        if self._done:
            raise RuntimeError("writer already finished")
        self._parts.append(data)
        self._pending += len(data)
        self._size += len(data)
        if self._pending >= IO_CHUNK:
            await self._flush_buffer()

    def _durable_rename(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        shard = self._final.parent
        if not shard.is_dir():
            shard.mkdir(parents=True, exist_ok=True)
            _fsync_dir(shard.parent)
        if self._final.exists():
            raise FileExistsError("blob ids are never reused")
        os.rename(self._temp, self._final)
        _fsync_dir(shard)

    async def commit(self) -> int:
        if self._done:
            raise RuntimeError("writer already finished")
        if self._file is None:
            self._file = await asyncio.to_thread(self._open)
        await self._flush_buffer()
        await asyncio.to_thread(self._durable_rename)
        self._done = True
        return self._size

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._parts = []
        # Shielded: an abort caused by a cancelled request must still remove the file.
        await asyncio.shield(asyncio.to_thread(self._discard))


class LocalBlobStore(BlobStore):
    name = "local"

    def __init__(self, root: Path, *, incomplete_grace_seconds: int = 6 * 3600) -> None:
        self.root = root
        self.objects = root / "objects"
        self.incoming = root / "incoming"
        self.grace = incomplete_grace_seconds

    def object_path(self, blob_id: str) -> Path:
        return self.objects / blob_id[:2] / blob_id

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        for path in (self.root, self.objects, self.incoming):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        cutoff = time.time() - self.grace
        removed = 0
        for leftover in self.incoming.glob("*.part"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            logger.info("removed incomplete uploads", extra={"count": removed})

    async def close(self) -> None:
        return None

    def writer(self, blob_id: str) -> BlobWriter:
        return _LocalWriter(self, blob_id)

    async def read(self, blob_id: str, start: int, end: int, chunk_size: int = IO_CHUNK) -> AsyncIterator[bytes]:
        path = self.object_path(blob_id)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise StoredObjectMissing(blob_id) from None
        try:
            await asyncio.to_thread(handle.seek, start)
            position = start
            while position < end:
                chunk = await asyncio.to_thread(handle.read, min(chunk_size, end - position))
                if not chunk:
                    return  # shorter than asked: the caller's size check decides
                position += len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def size(self, blob_id: str) -> int | None:
        try:
            stat = await asyncio.to_thread(self.object_path(blob_id).stat)
        except FileNotFoundError:
            return None
        return stat.st_size

    async def delete(self, blob_id: str) -> None:
        await asyncio.to_thread(self.object_path(blob_id).unlink, missing_ok=True)

    async def ready(self) -> bool:
        return await asyncio.to_thread(lambda: self.objects.is_dir() and os.access(self.incoming, os.W_OK))

    def incomplete_uploads(self) -> list[Path]:
        """Temporary files present now (tests, operations)."""
        return sorted(self.incoming.glob("*.part"))
