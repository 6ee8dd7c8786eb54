"""Blobs in S3-compatible object storage (production), through aiobotocore.

An upload is a multipart upload of ``part_size`` parts (a small blob is one
PutObject); S3 makes an object visible only when the upload completes, so an
aborted or interrupted upload is never readable under its key. An upload that
is neither completed nor aborted (a crash) keeps its parts out of sight until
the bucket's lifecycle rule ``AbortIncompleteMultipartUpload`` removes them
(docs/operations.md). Memory per upload: one part.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from carevault_fileservice.storage.base import IO_CHUNK, BlobStore, BlobWriter, StoredObjectMissing

logger = logging.getLogger("carevault.fileservice.storage")

KEY_PREFIX = "blobs/"


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class _S3Writer(BlobWriter):
    def __init__(self, store: S3BlobStore, blob_id: str) -> None:
        self._store = store
        self._key = store.key(blob_id)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self._done = False

    async def _upload_part(self, data: bytes) -> None:
        client = self._store.client
        if self._upload_id is None:
            created = await client.create_multipart_upload(Bucket=self._store.bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = await client.upload_part(Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data)
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def write(self, data: bytes) -> None:
        if self._done:
            raise RuntimeError("writer already finished")
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self._store.part_size:
            part = bytes(self._buffer[: self._store.part_size])
            del self._buffer[: self._store.part_size]
            await self._upload_part(part)

    async def commit(self) -> int:
        if self._done:
            raise RuntimeError("writer already finished")
        client, bucket = self._store.client, self._store.bucket
        if self._upload_id is None:
            await client.put_object(Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
        else:
            if self._buffer:
                await self._upload_part(bytes(self._buffer))
            await client.complete_multipart_upload(
                Bucket=bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        self._buffer = bytearray()
        self._done = True
        return self._size

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        if self._upload_id is not None:
            try:
                await self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id)
            except (ClientError, BotoCoreError) as exc:
                # Invisible anyway; the bucket lifecycle rule removes the parts.
                logger.warning("abort of a multipart upload failed", extra={"error_type": type(exc).__name__})


class S3BlobStore(BlobStore):
    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint: str | None,
        region: str,
        credentials: S3Credentials | None,
        part_size: int = 8 * 1024 * 1024,
        max_connections: int = 50,
    ) -> None:
        self.bucket = bucket
        self.part_size = part_size
        self._endpoint = endpoint
        self._region = region
        self._credentials = credentials
        self._max_connections = max_connections
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3 store used before start()")
        return self._client

    def key(self, blob_id: str) -> str:
        return KEY_PREFIX + blob_id

    async def start(self) -> None:
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=self._max_connections,
            # Plain Content-MD5-free requests: what every S3-compatible server accepts.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        kwargs: dict[str, Any] = {"region_name": self._region, "config": config}
        if self._endpoint:
            kwargs["endpoint_url"] = self._endpoint
        if self._credentials is not None:
            kwargs["aws_access_key_id"] = self._credentials.access_key_id
            kwargs["aws_secret_access_key"] = self._credentials.secret_access_key
        self._stack = AsyncExitStack()
        self._client = await self._stack.enter_async_context(get_session().create_client("s3", **kwargs))

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack, self._client = None, None

    def writer(self, blob_id: str) -> BlobWriter:
        return _S3Writer(self, blob_id)

    async def read(self, blob_id: str, start: int, end: int, chunk_size: int = IO_CHUNK) -> AsyncIterator[bytes]:
        if end <= start:
            return
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self.key(blob_id), Range=f"bytes={start}-{end - 1}")
        except ClientError as exc:
            if _missing(exc):
                raise StoredObjectMissing(blob_id) from None
            raise
        async with response["Body"] as body:
            while True:
                chunk = await body.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    async def size(self, blob_id: str) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=self.key(blob_id))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, blob_id: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self.key(blob_id))

    async def ready(self) -> bool:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        return True
