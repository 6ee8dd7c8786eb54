"""``Idempotency-Key`` on ``POST /fhir/Binary``: the same key and body within 24 hours
get the first answer and store nothing twice; the same key with another body is
refused (422); duplicates sent at the same time store one Binary.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import httpx

from tests.e2e.binary_crash import pending_uploads
from tests.e2e.test_binary import blob_rows, download
from tests.support import RunningMesh

MIB = 1024 * 1024


async def binaries(mesh: RunningMesh) -> int:
    rows = await mesh.db_execute("records", "SELECT count(*) FROM resources WHERE resource_type = 'Binary'")
    return int(rows[0][0])  # type: ignore[call-overload]


def headers_for(key: str, patient_id: str, idempotency_key: str, content_type: str = "application/pdf") -> dict[str, str]:
    return {
        "content-type": content_type,
        "x-security-context": f"Patient/{patient_id}",
        "x-patient-key": key,
        "idempotency-key": idempotency_key,
    }


async def streamed(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 100_000):
        yield data[start : start + 100_000]


async def test_a_retried_upload_gets_the_first_answer_and_stores_nothing_twice(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh
) -> None:
    key, patient_id = patient
    data = os.urandom(2 * MIB + 7)
    idem = f"upload-{os.urandom(8).hex()}"
    first = await fhir.post("/Binary", content=streamed(data), headers=headers_for(key, patient_id, idem))
    assert first.status_code == 201, first.text
    rows, count = await blob_rows(mesh), await binaries(mesh)

    again = await fhir.post("/Binary", content=streamed(data), headers=headers_for(key, patient_id, idem))
    assert again.status_code == 201, again.text
    assert again.headers["location"] == first.headers["location"]
    assert again.json() == first.json()
    assert await blob_rows(mesh) == rows and await binaries(mesh) == count
    assert (await download(fhir, key, first.json()["id"])).content == data

    # The same key with another body, or another content type: refused, nothing stored.
    for other in (
        dict(content=data[:-1], headers=headers_for(key, patient_id, idem)),
        dict(content=data, headers=headers_for(key, patient_id, idem, "image/png")),
    ):
        refused = await fhir.post("/Binary", **other)  # type: ignore[arg-type]
        assert refused.status_code == 422, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"
    assert await blob_rows(mesh) == rows and await binaries(mesh) == count
    assert await pending_uploads(mesh) == []


async def test_a_binary_resource_in_json_is_idempotent_too(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    key, patient_id = patient
    resource = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "securityContext": {"reference": f"Patient/{patient_id}"},
        "data": base64.b64encode(b"a small note").decode(),
    }
    headers = {"x-patient-key": key, "idempotency-key": f"json-{os.urandom(8).hex()}", "content-type": "application/fhir+json"}
    first = await fhir.post("/Binary", json=resource, headers=headers)
    assert first.status_code == 201, first.text
    count = await binaries(mesh)
    again = await fhir.post("/Binary", json=resource, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    changed = await fhir.post("/Binary", json={**resource, "contentType": "text/csv"}, headers=headers)
    assert changed.status_code == 422
    assert await binaries(mesh) == count


async def test_duplicates_sent_together_store_one_binary(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    key, patient_id = patient
    data = os.urandom(MIB)
    idem = f"together-{os.urandom(8).hex()}"
    rows, count = len(await blob_rows(mesh)), await binaries(mesh)
    answers = await asyncio.gather(*(fhir.post("/Binary", content=data, headers=headers_for(key, patient_id, idem)) for _ in range(3)))
    statuses = [a.status_code for a in answers]
    # Documented: the first commit wins; the others get its answer, or 409 (retry) if they committed at the same moment.
    assert set(statuses) <= {201, 409} and 201 in statuses, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers if a.status_code == 201}) == 1
    assert await binaries(mesh) == count + 1
    assert len(await blob_rows(mesh)) == rows + 1  # the losers' content was deleted
    assert await pending_uploads(mesh) == []
    retried = await fhir.post("/Binary", content=data, headers=headers_for(key, patient_id, idem))
    assert retried.status_code == 201 and retried.json()["id"] == next(a.json()["id"] for a in answers if a.status_code == 201)


async def test_idempotency_key_on_an_update_is_refused(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    created = await fhir.post("/Binary", content=b"v1", headers=headers_for(key, patient_id, f"u-{os.urandom(8).hex()}", "text/plain"))
    assert created.status_code == 201
    refused = await fhir.put(
        f"/Binary/{created.json()['id']}", content=b"v2", headers=headers_for(key, patient_id, f"u-{os.urandom(8).hex()}", "text/plain")
    )
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
