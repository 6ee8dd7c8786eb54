"""BlobService on both backends: round trips, ranges, tampering, limits, interrupted uploads."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_common.db import create_engine, session_factory
from carevault_common.errors import PayloadTooLarge
from carevault_crypto import FileKey
from carevault_fileservice.blobs.service import PREVERIFY_BYTES, BlobContent, BlobService
from carevault_fileservice.errors import BlobIntegrityFailure, MidStreamIntegrityFailure, RangeNotSatisfiable
from carevault_fileservice.models import Base, Blob
from carevault_fileservice.storage import BlobStore, LocalBlobStore
from carevault_fileservice.storage.s3 import S3BlobStore

from .conftest import boto_client, leftovers

SEG = 4096


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fileservice.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


def service(store: BlobStore, max_bytes: int = 64 * 1024 * 1024) -> BlobService:
    return BlobService(store, max_bytes=max_bytes, segment_size=SEG)


async def chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for pos in range(0, len(data), size):
        yield data[pos : pos + size]


async def body(content: BlobContent) -> bytes:
    return b"".join(content.prefetched) + b"".join([c async for c in content.body])


async def put(blobs: BlobService, sessions: Any, blob_id: str, key: FileKey, data: bytes) -> None:
    async with sessions() as session:
        stored = await blobs.put(session, blob_id, key, chunks(data), len(data))
    assert stored.size == len(data)


async def get(blobs: BlobService, sessions: Any, blob_id: str, key: FileKey, rng: str | None = None) -> BlobContent:
    async with sessions() as session:
        return await blobs.open(session, blob_id, key, rng)


async def rows(sessions: Any) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Blob))).scalar_one())


async def stored_bytes(store: BlobStore, blob_id: str) -> bytes:
    size = await store.size(blob_id)
    assert size is not None
    return b"".join([c async for c in store.read(blob_id, 0, size)])


async def overwrite(store: BlobStore, blob_id: str, data: bytes, request: pytest.FixtureRequest) -> None:
    if isinstance(store, LocalBlobStore):
        store.object_path(blob_id).write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        boto_client(request.getfixturevalue("s3_server")).put_object(Bucket=store.bucket, Key=store.key(blob_id), Body=data)


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG + 7])
async def test_round_trip_and_ranges(store: BlobStore, sessions: Any, size: int) -> None:
    blobs, key, data = service(store), FileKey.generate(), os.urandom(size)
    blob_id = f"roundtrip-{size:08d}-x"
    await put(blobs, sessions, blob_id, key, data)
    whole = await get(blobs, sessions, blob_id, key)
    assert whole.status == 200 and whole.headers["content-length"] == str(size)
    assert await body(whole) == data
    edges = {0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, size - 1}
    for start in sorted(e for e in edges if 0 <= e < size):
        for end in sorted(e for e in edges | {size} if start < e <= size):
            part = await get(blobs, sessions, blob_id, key, f"bytes={start}-{end - 1}")
            assert part.status == 206
            assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
            assert await body(part) == data[start:end], (start, end)
    if size:
        assert await body(await get(blobs, sessions, blob_id, key, "bytes=-3")) == data[-3:]
    with pytest.raises(RangeNotSatisfiable):
        await get(blobs, sessions, blob_id, key, f"bytes={size}-")


async def test_wrong_key_is_refused(store: BlobStore, sessions: Any) -> None:
    blobs = service(store)
    await put(blobs, sessions, "wrong-key-blob-01", FileKey.generate(), b"secret bytes")
    with pytest.raises(BlobIntegrityFailure):
        await get(blobs, sessions, "wrong-key-blob-01", FileKey.generate())


@pytest.mark.parametrize("where", ["version", "salt", "commitment", "first-segment", "tag", "last-byte"])
async def test_any_changed_byte_is_refused_before_anything_is_sent(
    store: BlobStore, sessions: Any, where: str, request: pytest.FixtureRequest
) -> None:
    blobs, key, data = service(store), FileKey.generate(), os.urandom(3 * SEG + 100)
    await put(blobs, sessions, "tamper-blob-000001", key, data)
    original = await stored_bytes(store, "tamper-blob-000001")
    position = {"version": 0, "salt": 5, "commitment": 60, "first-segment": 80, "tag": 73 + SEG + 5, "last-byte": -1}[where]
    tampered = bytearray(original)
    tampered[position] ^= 0x40
    await overwrite(store, "tamper-blob-000001", bytes(tampered), request)
    with pytest.raises(BlobIntegrityFailure):
        await get(blobs, sessions, "tamper-blob-000001", key)


async def test_truncation_reordering_and_swapping_are_refused(store: BlobStore, sessions: Any, request: pytest.FixtureRequest) -> None:
    blobs, key = service(store), FileKey.generate()
    data = os.urandom(4 * SEG)
    await put(blobs, sessions, "layout-blob-000001", key, data)
    await put(blobs, sessions, "layout-blob-000002", key, data)
    original = await stored_bytes(store, "layout-blob-000001")
    other = await stored_bytes(store, "layout-blob-000002")
    seg_ct = SEG + 16
    seg = [original[73 + i * seg_ct : 73 + (i + 1) * seg_ct] for i in range(4)]
    variants = {
        "truncated at a segment boundary": original[: 73 + 3 * seg_ct],
        "truncated by a byte": original[:-1],
        "extended": original + b"\x00",
        "two segments reordered": original[:73] + seg[1] + seg[0] + seg[2] + seg[3],
        "a segment from another blob": original[:73] + other[73 : 73 + seg_ct] + b"".join(seg[1:]),
    }
    for name, variant in variants.items():
        await overwrite(store, "layout-blob-000001", variant, request)
        with pytest.raises(BlobIntegrityFailure):
            await get(blobs, sessions, "layout-blob-000001", key)
        if len(variant) == len(original):  # a range over the altered segments fails too
            with pytest.raises(BlobIntegrityFailure):
                await get(blobs, sessions, "layout-blob-000001", key, f"bytes={SEG - 2}-{SEG + 2}")
        await overwrite(store, "layout-blob-000001", original, request)
        assert await body(await get(blobs, sessions, "layout-blob-000001", key)) == data, name


async def test_failure_after_headers_aborts_the_stream(store: BlobStore, sessions: Any, request: pytest.FixtureRequest) -> None:
    blobs, key = service(store), FileKey.generate()
    data = os.urandom(PREVERIFY_BYTES + 10 * SEG)
    await put(blobs, sessions, "midstream-blob-001", key, data)
    tampered = bytearray(await stored_bytes(store, "midstream-blob-001"))
    tampered[-100] ^= 1
    await overwrite(store, "midstream-blob-001", bytes(tampered), request)
    content = await get(blobs, sessions, "midstream-blob-001", key)  # the start authenticates
    assert content.status == 200
    received = bytearray(b"".join(content.prefetched))

    async def drain() -> None:
        async for chunk in content.body:
            received.extend(chunk)

    with pytest.raises(MidStreamIntegrityFailure):
        await drain()
    assert len(received) < len(data)
    assert data.startswith(bytes(received))  # only authenticated plaintext, never the altered segment


async def test_too_large_leaves_nothing(store: BlobStore, sessions: Any, request: pytest.FixtureRequest) -> None:
    blobs = service(store, max_bytes=6 * 1024 * 1024)
    async with sessions() as session:
        with pytest.raises(PayloadTooLarge):
            await blobs.put(session, "too-large-blob-001", FileKey.generate(), chunks(os.urandom(7 * 1024 * 1024), 1 << 20), None)
        with pytest.raises(PayloadTooLarge):
            await blobs.put(session, "too-large-blob-002", FileKey.generate(), chunks(b""), 7 * 1024 * 1024)
    assert await store.size("too-large-blob-001") is None
    assert await rows(sessions) == 0
    assert leftovers(store, request.getfixturevalue("s3_server") if isinstance(store, S3BlobStore) else None) == []


async def test_an_interrupted_upload_leaves_nothing(store: BlobStore, sessions: Any, request: pytest.FixtureRequest) -> None:
    class ClientGone(Exception):
        pass

    async def cut_off() -> AsyncIterator[bytes]:
        yield os.urandom(6 * 1024 * 1024)
        raise ClientGone

    async with sessions() as session:
        with pytest.raises(ClientGone):
            await service(store).put(session, "interrupted-blob-01", FileKey.generate(), cut_off(), None)
    assert await store.size("interrupted-blob-01") is None
    assert await rows(sessions) == 0
    assert leftovers(store, request.getfixturevalue("s3_server") if isinstance(store, S3BlobStore) else None) == []


async def test_blob_ids_are_never_reused(store: BlobStore, sessions: Any) -> None:
    from carevault_fileservice.errors import BlobExists

    blobs = service(store)
    await put(blobs, sessions, "reused-blob-id-0001", FileKey.generate(), b"first")
    with pytest.raises(BlobExists):
        await put(blobs, sessions, "reused-blob-id-0001", FileKey.generate(), b"second")


async def test_fifty_mebibytes(store: BlobStore, sessions: Any) -> None:
    blobs, key = BlobService(store, max_bytes=1 << 30, segment_size=65536), FileKey.generate()
    data = os.urandom(50 * 1024 * 1024)
    async with sessions() as session:
        await blobs.put(session, "fifty-mib-blob-001", key, chunks(data, 1 << 20), len(data))
    content = await get(blobs, sessions, "fifty-mib-blob-001", key)
    assert await body(content) == data
    part = await get(blobs, sessions, "fifty-mib-blob-001", key, "bytes=30000000-30065535")
    assert await body(part) == data[30000000:30065536]


class _RaggedStore(LocalBlobStore):
    """A local store that answers reads in pieces of odd sizes, as a network store may:
    segments then straddle pieces and are gathered before decryption."""

    async def read(self, blob_id: str, start: int, end: int, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        sizes = (1000, SEG + 16, 7, 3 * SEG + 5)
        turn = 0
        async for chunk in super().read(blob_id, start, end, chunk_size):
            view = memoryview(chunk)
            while view:
                yield bytes(view[: sizes[turn % len(sizes)]])
                view = view[sizes[turn % len(sizes)] :]
                turn += 1


async def test_reads_in_ragged_pieces_round_trip(tmp_path: Path, sessions: Any) -> None:
    store = _RaggedStore(tmp_path / "ragged")
    await store.start()
    blobs, key, data = service(store), FileKey.generate(), os.urandom(9 * SEG + 123)
    await put(blobs, sessions, "ragged-pieces-0001", key, data)
    assert await body(await get(blobs, sessions, "ragged-pieces-0001", key)) == data
    for start, end in ((0, 1), (SEG - 3, 2 * SEG + 4), (5 * SEG + 1, len(data))):
        part = await get(blobs, sessions, "ragged-pieces-0001", key, f"bytes={start}-{end - 1}")
        assert await body(part) == data[start:end], (start, end)
