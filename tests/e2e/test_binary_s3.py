"""Files through the whole mesh with fileservice on S3-compatible storage: round
trips, ranges, a cut-off upload, and the orphan sweep after api dies mid-write.

The object store here is moto's S3 server (``moto[server]``, ThreadedMotoServer on
loopback): an **emulator** of the S3 API, not a real object store. This test shows
the wiring (settings -> S3 backend, credentials from files, multipart uploads,
ranged reads, aborts); the backend's own tests are in fileservice/tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_nothing_secret_at_rest
from tests.e2e.binary_crash import (
    commit_late,
    kill_api_mid_upload,
    pending_uploads,
    store_without_commit,
    sweep_with_a_restarted_api,
    wait_for,
)
from tests.e2e.test_binary import _raw_request, content_with_canary, download, upload
from tests.e2e.test_records import create_patient
from tests.support import RunningMesh, free_port_offset, new_patient_key, running_mesh

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    import boto3

    client = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="eu-west-3", aws_access_key_id="cv-test", aws_secret_access_key="cv-secret"
    )
    client.create_bucket(Bucket="carevault-blobs", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    try:
        yield {"endpoint": f"http://{host}:{port}", "client": client}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_mesh(s3: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    secrets = tmp_path_factory.mktemp("s3-credentials")
    (secrets / "access-key-id").write_text("cv-test\n")
    (secrets / "secret-access-key").write_text("cv-secret\n")
    env = {
        "FILESERVICE_S3_ENDPOINT": s3["endpoint"],
        "FILESERVICE_S3_BUCKET": "carevault-blobs",
        "FILESERVICE_S3_REGION": "eu-west-3",
        "FILESERVICE_S3_ACCESS_KEY_ID_FILE": str(secrets / "access-key-id"),
        "FILESERVICE_S3_SECRET_ACCESS_KEY_FILE": str(secrets / "secret-access-key"),
        "FILESERVICE_S3_PART_SIZE": str(5 * MIB),
    }
    with running_mesh(tmp_path_factory.mktemp("mesh-s3"), free_port_offset(), "sqlite", extra_env=env) as running:
        yield running
    assert_nothing_secret_at_rest(running)


def objects(s3: dict[str, Any]) -> list[str]:
    listing = s3["client"].list_objects_v2(Bucket="carevault-blobs")
    return sorted(o["Key"] for o in listing.get("Contents", []))


async def test_round_trip_range_and_cut_off_upload_on_s3(s3_mesh: RunningMesh, s3: dict[str, Any]) -> None:
    key = new_patient_key()
    async with s3_mesh.fhir(timeout=120) as fhir:
        patient_id = await create_patient(fhir, key)
        for size in (0, 70_000, 12 * MIB + 3):  # one PutObject, one, and a three-part multipart upload
            data = content_with_canary(size)
            binary_id = await upload(fhir, key, patient_id, data, "application/dicom")
            got = await download(fhir, key, binary_id)
            assert got.status_code == 200 and got.content == data
            if size:
                part = await download(fhir, key, binary_id, range=f"bytes={size // 2}-{size // 2 + 99}")
                assert part.status_code == 206 and part.content == data[size // 2 : size // 2 + 100]
        stored = objects(s3)
        assert len(stored) == 3 and all(k.startswith("blobs/") for k in stored)
        for k in stored:  # ciphertext only
            assert b"CANARY" not in s3["client"].get_object(Bucket="carevault-blobs", Key=k)["Body"].read()

        head = (
            f"POST /fhir/Binary HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {s3_mesh.dev_token}\r\n"
            f"x-patient-key: {key}\r\nx-security-context: Patient/{patient_id}\r\ncontent-type: application/octet-stream\r\n"
            f"content-length: {40 * MIB}\r\n\r\n"
        ).encode()
        await asyncio.to_thread(_raw_request, s3_mesh, head, os.urandom(12 * MIB), close_early=True)
        for _ in range(50):
            await asyncio.sleep(0.2)
            if not s3["client"].list_multipart_uploads(Bucket="carevault-blobs").get("Uploads"):
                break
        assert s3["client"].list_multipart_uploads(Bucket="carevault-blobs").get("Uploads", []) == []
        assert objects(s3) == stored
        rows = await s3_mesh.db_execute("fileservice", "SELECT count(*) FROM blobs")
        assert rows == [(3,)]
        assert (await fhir.get("/metadata")).status_code == 200
    assert not list(Path(s3_mesh.state_dir / "blobs").rglob("*.part"))


async def test_a_crash_between_upload_and_commit_leaves_nothing_on_s3_after_the_sweep(s3_mesh: RunningMesh, s3: dict[str, Any]) -> None:
    key = new_patient_key()
    async with s3_mesh.fhir(timeout=120) as fhir:
        patient_id = await create_patient(fhir, key)
    stored, rows = objects(s3), await s3_mesh.db_execute("fileservice", "SELECT count(*) FROM blobs")

    prepared = await store_without_commit(s3_mesh, key, patient_id, content_with_canary(6 * MIB))  # a multipart upload
    assert f"blobs/{prepared['blobId']}" in objects(s3)

    def uploading() -> bool:
        return bool(s3["client"].list_multipart_uploads(Bucket="carevault-blobs").get("Uploads"))

    await kill_api_mid_upload(s3_mesh, key, patient_id, uploading)
    await wait_for(lambda: not uploading(), "fileservice to abort the cut-off multipart upload")
    assert len(await pending_uploads(s3_mesh)) == 2

    await sweep_with_a_restarted_api(s3_mesh)

    assert objects(s3) == stored
    assert await s3_mesh.db_execute("fileservice", "SELECT count(*) FROM blobs") == rows
    late = await commit_late(s3_mesh, key, patient_id, prepared)
    assert late.status_code == 409
