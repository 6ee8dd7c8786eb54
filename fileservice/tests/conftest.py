"""Storage backends under test: the local directory, and S3 through an emulator.

The S3 backend is tested against moto's S3 server (``moto[server]``,
ThreadedMotoServer on loopback): an **emulator** of the S3 API, not a real object
store. It checks that the backend speaks the protocol (multipart uploads, ranged
GETs, aborts, deletes); it says nothing of a real store's durability or limits.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from carevault_fileservice.storage import BlobStore, LocalBlobStore
from carevault_fileservice.storage.s3 import S3BlobStore, S3Credentials

S3_PART_SIZE = 5 * 1024 * 1024  # the S3 minimum, so multipart paths run with small files


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """An S3 emulator (moto) on loopback, with fake credentials."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    try:
        yield {"endpoint": endpoint, "region": "us-east-1", "credentials": S3Credentials("testing", "testing")}
    finally:
        server.stop()


def make_bucket(s3_server: dict[str, Any]) -> str:
    import boto3

    bucket = f"cv-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    client.create_bucket(Bucket=bucket)
    return bucket


def boto_client(s3_server: dict[str, Any]) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    backend: BlobStore
    if request.param == "local":
        backend = LocalBlobStore(tmp_path / "blobs")
    else:
        server = request.getfixturevalue("s3_server")
        backend = S3BlobStore(
            bucket=make_bucket(server),
            endpoint=server["endpoint"],
            region=server["region"],
            credentials=server["credentials"],
            part_size=S3_PART_SIZE,
        )
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def leftovers(store: BlobStore, s3_server: dict[str, Any] | None = None) -> list[str]:
    """Anything an upload left behind that is not a committed object."""
    if isinstance(store, LocalBlobStore):
        return [p.name for p in store.incomplete_uploads()]
    assert isinstance(store, S3BlobStore) and s3_server is not None
    uploads = boto_client(s3_server).list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in uploads.get("Uploads", [])]
