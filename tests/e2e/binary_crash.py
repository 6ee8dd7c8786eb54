"""Crashes in the middle of a Binary write, and the orphan sweep that cleans up after
them; shared by the local-directory tests (test_binary_orphans.py) and the S3 ones
(test_binary_s3.py).

Two ways to get an orphan:

* ``store_without_commit``: steps 1 and 2 of a write exactly as api makes them (over
  mTLS with api's certificate: records ``/files/prepare``, then fileservice
  ``PUT /blobs/{id}``), and no step 3 — the state api leaves when it dies between
  storing the content and committing the Binary. A complete blob, that no Binary
  points at and no stored key opens.
* ``kill_api_mid_upload``: a real ``SIGKILL`` of api while a client is streaming a
  body through the gateway (after prepare, before the end of the body).

``restart_api_sweeping`` then starts api again with a sweep every second over
uploads older than one second, and waits until records has no pending upload left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tests.support import RunningMesh

MIB = 1024 * 1024
SWEEP_FAST = {
    "API_BINARY_ORPHAN_SWEEP_INTERVAL_SECONDS": "1",
    "API_BINARY_UPLOAD_MAX_SECONDS": "1",
    "API_BINARY_ORPHAN_GRACE_SECONDS": "0",
}


def records_as_api(mesh: RunningMesh, key: str) -> httpx.AsyncClient:
    headers = {
        "x-carevault-tenant": "dev",
        "x-carevault-principal": "dev",
        "x-carevault-base-url": "https://test/fhir",
        "x-carevault-patient-scope": "*",
        "x-patient-key": key,
    }
    return httpx.AsyncClient(base_url=mesh.layout.url("records"), verify=mesh.ssl_context("api"), headers=headers, timeout=60)


async def store_without_commit(mesh: RunningMesh, key: str, patient_id: str, content: bytes) -> dict[str, Any]:
    """Prepare and store a blob as api does, then stop: returns what prepare gave
    (``blobId``, ``contentExtension``; the file key is dropped)."""
    async with records_as_api(mesh, key) as records:
        prepared = await records.post("/files/prepare", json={"patient": f"Patient/{patient_id}"})
        assert prepared.status_code == 200, prepared.text
        blob_id, file_key = prepared.json()["blobId"], prepared.json()["fileKey"]
    async with httpx.AsyncClient(base_url=mesh.layout.url("fileservice"), verify=mesh.ssl_context("api"), timeout=120) as files:
        stored = await files.put(f"/blobs/{blob_id}", content=content, headers={"x-file-key": file_key})
        assert stored.status_code == 201, stored.text
    return {"blobId": blob_id, "contentExtension": prepared.json()["contentExtension"]}


async def commit_late(mesh: RunningMesh, key: str, patient_id: str, prepared: dict[str, Any]) -> httpx.Response:
    """Step 3 of the write, as api would make it had it come back: the Binary pointing at the blob."""
    resource = {
        "resourceType": "Binary",
        "contentType": "application/octet-stream",
        "securityContext": {"reference": f"Patient/{patient_id}"},
        "meta": {"extension": [prepared["contentExtension"]]},
    }
    async with records_as_api(mesh, key) as records:
        return await records.post("/fhir/Binary", json=resource, headers={"content-type": "application/fhir+json"})


async def pending_uploads(mesh: RunningMesh) -> list[tuple[Any, ...]]:
    return await mesh.db_execute("records", "SELECT blob_id, abandoned_at FROM pending_uploads ORDER BY blob_id")


async def wait_for(condition: Callable[[], Any], what: str, attempts: int = 300) -> None:
    """Poll (every 0.2 s) until ``condition()`` (sync or async) holds; a bounded wait, not a timing check."""
    for _ in range(attempts):
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


async def kill_api_mid_upload(mesh: RunningMesh, key: str, patient_id: str, upload_started: Callable[[], Any]) -> None:
    """Stream a body through the gateway, SIGKILL api once ``upload_started()`` holds
    (fileservice is writing the blob), then let the client see its connection fail."""
    started = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        chunk = os.urandom(MIB)
        for _ in range(8):
            yield chunk
        started.set()
        await asyncio.sleep(120)  # hold the upload open until api is gone
        yield chunk

    headers = {"content-type": "application/octet-stream", "x-security-context": f"Patient/{patient_id}", "x-patient-key": key}
    async with mesh.fhir(timeout=180) as fhir:
        upload = asyncio.create_task(fhir.post("/Binary", content=body(), headers=headers))
        try:
            await asyncio.wait_for(started.wait(), 120)
            await wait_for(upload_started, "the blob upload to begin in fileservice")
            api = mesh.mesh.processes["api"]
            api.send_signal(signal.SIGKILL)
            await asyncio.to_thread(api.wait, 30)
        finally:
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await upload


def restart_api(mesh: RunningMesh, extra: dict[str, str] | None = None) -> None:
    """Stop api (whatever its state) and start it again, with ``extra`` settings on top."""
    mesh.mesh.stop_one("api")
    saved = dict(mesh.layout.extra_env)
    mesh.layout.extra_env.update(extra or {})
    try:
        mesh.mesh.start_one("api")
        mesh.mesh.wait_ready(timeout=60, services=("api",))
    finally:
        mesh.layout.extra_env.clear()
        mesh.layout.extra_env.update(saved)


async def sweep_with_a_restarted_api(mesh: RunningMesh) -> None:
    """api restarted with a fast sweep; waits until no pending upload is left, then
    restarts api with the mesh's own settings."""
    await asyncio.to_thread(restart_api, mesh, SWEEP_FAST)
    try:
        await wait_for(lambda: _none_pending(mesh), "the sweep to clear every pending upload")
    finally:
        await asyncio.to_thread(restart_api, mesh)


async def _none_pending(mesh: RunningMesh) -> bool:
    return await pending_uploads(mesh) == []
