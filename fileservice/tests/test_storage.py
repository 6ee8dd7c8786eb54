"""The storage backends: visibility only on commit, aborts leave nothing, ranged reads."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from carevault_fileservice.storage import BlobStore, LocalBlobStore, StoredObjectMissing
from carevault_fileservice.storage.s3 import S3BlobStore

from .conftest import S3_PART_SIZE, leftovers


def _server(request: pytest.FixtureRequest, store: BlobStore) -> dict[str, Any] | None:
    return request.getfixturevalue("s3_server") if isinstance(store, S3BlobStore) else None


async def _read(store: BlobStore, blob_id: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(blob_id, start, end)])


@pytest.mark.parametrize("size", [0, 1, 1000, S3_PART_SIZE, 2 * S3_PART_SIZE + 123])
async def test_write_commit_read(store: BlobStore, size: int, request: pytest.FixtureRequest) -> None:
    data = os.urandom(size)
    blob_id = f"blob-{size:012d}-abcdef"
    writer = store.writer(blob_id)
    for pos in range(0, size, 300_000):  # uneven chunks across part boundaries
        await writer.write(data[pos : pos + 300_000])
    assert await store.size(blob_id) is None  # not visible before commit
    assert await writer.commit() == size
    assert await store.size(blob_id) == size
    assert await _read(store, blob_id, 0, size) == data
    if size > 10:
        assert await _read(store, blob_id, 3, size - 2) == data[3 : size - 2]
    assert leftovers(store, _server(request, store)) == []
    await store.delete(blob_id)
    assert await store.size(blob_id) is None
    await store.delete(blob_id)  # deleting twice is fine


async def test_abort_leaves_nothing(store: BlobStore, request: pytest.FixtureRequest) -> None:
    blob_id = "aborted-upload-0001"
    writer = store.writer(blob_id)
    await writer.write(os.urandom(S3_PART_SIZE + 10))  # a started multipart upload on S3
    await writer.abort()
    await writer.abort()
    assert await store.size(blob_id) is None
    assert leftovers(store, _server(request, store)) == []
    with pytest.raises(StoredObjectMissing):
        await _read(store, blob_id, 0, 10)


async def test_ready(store: BlobStore) -> None:
    assert await store.ready()


async def test_local_commit_is_an_atomic_rename(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    writer = store.writer("atomic-rename-0001")
    await writer.write(b"x" * 10)
    await writer.write(b"y" * (2 * 1024 * 1024))  # past the write buffer: a temp file exists
    assert len(store.incomplete_uploads()) == 1
    assert not store.object_path("atomic-rename-0001").exists()
    await writer.commit()
    assert store.incomplete_uploads() == []
    path = store.object_path("atomic-rename-0001")
    assert path.stat().st_size == 10 + 2 * 1024 * 1024
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_local_start_sweeps_old_incomplete_uploads_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs", incomplete_grace_seconds=3600)
    await store.start()
    old = store.incoming / "crashed-upload-0001.aaaa.part"
    young = store.incoming / "in-progress-0001.bbbb.part"
    old.write_bytes(b"partial")
    young.write_bytes(b"partial")
    stale = time.time() - 7200
    os.utime(old, (stale, stale))
    await LocalBlobStore(tmp_path / "blobs", incomplete_grace_seconds=3600).start()
    assert not old.exists()
    assert young.exists()


async def test_s3_large_blob_is_multipart(request: pytest.FixtureRequest, store: BlobStore) -> None:
    if not isinstance(store, S3BlobStore):
        pytest.skip("S3 only")
    from .conftest import boto_client

    data = os.urandom(3 * S3_PART_SIZE + 1)
    writer = store.writer("multipart-blob-0001")
    await writer.write(data)
    await writer.commit()
    head = boto_client(request.getfixturevalue("s3_server")).head_object(Bucket=store.bucket, Key=store.key("multipart-blob-0001"))
    assert head["ETag"].strip('"').endswith("-4")  # four parts
    assert await _read(store, "multipart-blob-0001", S3_PART_SIZE - 5, S3_PART_SIZE + 5) == data[S3_PART_SIZE - 5 : S3_PART_SIZE + 5]
