"""An interrupted Binary write leaves nothing, even when api itself dies between
storing the content and committing the Binary: the orphan sweep finds the blob
through records' pending uploads and deletes it (local blob directory, SQLite and
PostgreSQL; the S3 backend in test_binary_s3.py).

Also: a commit arriving after the sweep claimed its upload is refused, so a Binary
never points at a swept blob.
"""

from __future__ import annotations

import httpx

from tests.e2e.binary_crash import (
    commit_late,
    kill_api_mid_upload,
    pending_uploads,
    store_without_commit,
    sweep_with_a_restarted_api,
    wait_for,
)
from tests.e2e.test_binary import blob_files, blob_rows, content_with_canary, download, upload
from tests.support import RunningMesh

MIB = 1024 * 1024


async def binaries(mesh: RunningMesh) -> list[tuple[object, ...]]:
    return await mesh.db_execute("records", "SELECT count(*) FROM resources WHERE resource_type = 'Binary'")


async def test_a_crash_between_upload_and_commit_leaves_nothing_after_the_sweep(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh
) -> None:
    key, patient_id = patient
    before_rows, before_files, before_binaries = await blob_rows(mesh), blob_files(mesh), await binaries(mesh)
    before_pending = {row[0] for row in await pending_uploads(mesh)}

    # The crash point: a complete blob, no Binary.
    prepared = await store_without_commit(mesh, key, patient_id, content_with_canary(3 * MIB + 5))
    orphan = prepared["blobId"]
    assert orphan in {row[0] for row in await blob_rows(mesh)}
    # A real crash: api killed while a client streams a body (fileservice writing it).
    incoming = mesh.state_dir / "blobs" / "incoming"
    await kill_api_mid_upload(mesh, key, patient_id, lambda: any(incoming.glob("*.part")))
    await wait_for(lambda: not any(incoming.glob("*.part")), "fileservice to drop the cut-off upload")
    left = {row[0] for row in await pending_uploads(mesh)} - before_pending
    assert orphan in left and len(left) == 2  # the orphan's, and the killed upload's

    await sweep_with_a_restarted_api(mesh)

    assert await blob_rows(mesh) == before_rows
    assert blob_files(mesh) == before_files
    assert await binaries(mesh) == before_binaries
    # api coming back late with the commit: refused, the blob is gone.
    late = await commit_late(mesh, key, patient_id, prepared)
    assert late.status_code == 409 and late.json()["issue"][0]["details"]["coding"][0]["code"] == "upload-expired", late.text
    assert await binaries(mesh) == before_binaries
    # And the mesh goes on.
    data = content_with_canary(70_000)
    binary_id = await upload(fhir, key, patient_id, data)
    assert (await download(fhir, key, binary_id)).content == data
    assert await pending_uploads(mesh) == []


async def test_failed_writes_leave_no_pending_upload(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    key, patient_id = patient
    before = await pending_uploads(mesh)
    binary_id = await upload(fhir, key, patient_id, b"first")
    headers = {"x-patient-key": key, "x-security-context": f"Patient/{patient_id}", "content-type": "text/plain"}
    stale = await fhir.put(f"/Binary/{binary_id}", content=b"second", headers={**headers, "if-match": 'W/"7"'})
    assert stale.status_code == 412
    assert await pending_uploads(mesh) == before
