"""Files (FHIR Binary) through the whole mesh: gateway -> api -> records (metadata,
keys) and fileservice (streaming-encrypted blobs).

Covers round trips of the shared sample files and of sizes around the segment
size, Range reads, the FHIR JSON representation, key and X-Security-Context
checks, attachments and Bundles, tampering with stored blobs, interrupted uploads
and failed commits (nothing left behind), and mid-stream integrity failures
(the transfer fails, never completes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carevault_cli.mesh import TLS_PORTS
from tests.audit_support import events_since, last_seq
from tests.e2e.test_records import create_patient
from tests.support import RunningMesh, canary, new_patient_key, read_http_answer, shared_data_dir

SEG = 65536  # fileservice's default segment size (FILESERVICE_SEGMENT_SIZE)
TAG = 16
HEADER = 73
MIB = 1024 * 1024
OBSERVATION_ATTACHMENT = "https://carevault.dev/fhir/StructureDefinition/observation-attachment"
TYPES = {".pdf": "application/pdf", ".jpg": "image/jpeg", ".dcm": "application/dicom", ".txt": "text/plain"}


def content_with_canary(size: int) -> bytes:
    """Random bytes with a canary inside (when there is room): it must never be found at rest."""
    data = bytearray(os.urandom(size))
    mark = canary("file").encode()
    if size >= len(mark):
        position = size // 2 - len(mark) // 2
        data[position : position + len(mark)] = mark
    return bytes(data)


async def upload(fhir: httpx.AsyncClient, key: str, patient_id: str, data: Any, content_type: str = "application/octet-stream") -> str:
    resp = await fhir.post(
        "/Binary", content=data, headers={"content-type": content_type, "x-security-context": f"Patient/{patient_id}", "x-patient-key": key}
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].startswith("Binary/")
    binary_id: str = resp.json()["id"]
    assert resp.headers["location"] == f"Binary/{binary_id}/_history/1"
    return binary_id


async def download(fhir: httpx.AsyncClient, key: str, binary_id: str, **headers: str) -> httpx.Response:
    return await fhir.get(f"/Binary/{binary_id}", headers={"x-patient-key": key, "accept": "*/*", **headers})


async def blob_rows(mesh: RunningMesh) -> list[tuple[Any, ...]]:
    return await mesh.db_execute("fileservice", "SELECT id, plaintext_size, stored_size FROM blobs ORDER BY id")


def blob_files(mesh: RunningMesh) -> list[Path]:
    return sorted(p for p in (mesh.state_dir / "blobs").rglob("*") if p.is_file())


async def upload_and_locate(fhir: httpx.AsyncClient, mesh: RunningMesh, key: str, patient_id: str, data: bytes) -> tuple[str, Path]:
    """Upload, and find the stored object it made (the one new blob row)."""
    before = {row[0] for row in await blob_rows(mesh)}
    binary_id = await upload(fhir, key, patient_id, data)
    (blob_id,) = {str(row[0]) for row in await blob_rows(mesh)} - before
    return binary_id, mesh.state_dir / "blobs" / "objects" / blob_id[:2] / blob_id


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.shared_data
async def test_round_trip_of_the_shared_sample_files(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    files = sorted(p for p in (shared_data_dir() / "files").iterdir() if p.suffix in TYPES)
    assert len(files) >= 7
    for path in files:
        data = path.read_bytes()
        binary_id = await upload(fhir, key, patient_id, data, TYPES[path.suffix])
        got = await download(fhir, key, binary_id)
        assert got.status_code == 200, (path.name, got.text)
        assert got.content == data, path.name
        assert got.headers["content-type"] == TYPES[path.suffix]
        assert got.headers["content-length"] == str(len(data))
        assert got.headers["etag"] == 'W/"1"'
        # The same file by its own type, and as FHIR JSON (all are below the 1 MiB limit).
        assert (await download(fhir, key, binary_id, accept=TYPES[path.suffix])).content == data
        resource = (await fhir.get(f"/Binary/{binary_id}", headers={"x-patient-key": key})).json()
        assert resource["resourceType"] == "Binary" and resource["contentType"] == TYPES[path.suffix]
        assert resource["securityContext"] == {"reference": f"Patient/{patient_id}"}
        assert base64.b64decode(resource["data"]) == data
        assert "extension" not in resource.get("meta", {})  # the content reference never leaves records


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG + 3])
async def test_round_trip_of_sizes_around_the_segment(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh, size: int
) -> None:
    key, patient_id = patient
    data = content_with_canary(size)
    binary_id = await upload(fhir, key, patient_id, data)
    got = await download(fhir, key, binary_id)
    assert got.status_code == 200
    assert got.content == data
    rows = [r for r in await blob_rows(mesh) if r[1] == size]
    assert rows and all(r[2] == HEADER + size + TAG * max(1, -(-size // SEG)) for r in rows)


async def test_fifty_mebibytes_stream_through(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    size, chunk = 50 * MIB, os.urandom(MIB)
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(size // MIB):
            piece = i.to_bytes(4, "big") + chunk[4:]
            digest.update(piece)
            yield piece

    binary_id = await upload(fhir, key, patient_id, body(), "video/mp4")
    received = hashlib.sha256()
    length = 0
    async with fhir.stream("GET", f"/Binary/{binary_id}", headers={"x-patient-key": key, "accept": "video/mp4"}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-length"] == str(size)
        async for part in resp.aiter_bytes():
            received.update(part)
            length += len(part)
    assert length == size and received.hexdigest() == digest.hexdigest()
    middle = await download(fhir, key, binary_id, range=f"bytes={30 * MIB - 10}-{30 * MIB + 9}")
    assert middle.status_code == 206
    assert middle.content == (chunk[MIB - 10 :] + (30).to_bytes(4, "big") + chunk[4:10])
    too_big_for_json = await fhir.get(f"/Binary/{binary_id}", headers={"x-patient-key": key})
    assert too_big_for_json.status_code == 406
    assert too_big_for_json.json()["issue"][0]["details"]["coding"][0]["code"] == "binary-too-large-for-json"


# -- ranges ---------------------------------------------------------------------------------------


async def test_range_reads_at_segment_edges(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    size = 3 * SEG + 100
    data = os.urandom(size)
    binary_id = await upload(fhir, key, patient_id, data, "image/png")
    edges = [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG - 1, 2 * SEG, 3 * SEG, size - 1]
    for start in edges:
        for end in (e for e in [*edges, size] if e > start):
            resp = await download(fhir, key, binary_id, range=f"bytes={start}-{end - 1}")
            assert resp.status_code == 206, resp.text
            assert resp.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
            assert resp.headers["content-type"] == "image/png"
            assert resp.content == data[start:end], (start, end)
    assert (await download(fhir, key, binary_id, range="bytes=-100")).content == data[-100:]
    assert (await download(fhir, key, binary_id, range=f"bytes={2 * SEG}-")).content == data[2 * SEG :]
    unsatisfiable = await download(fhir, key, binary_id, range=f"bytes={size}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
    several = await download(fhir, key, binary_id, range="bytes=0-1,5-6")
    assert several.status_code == 200 and several.content == data  # multi-range: the whole content


# -- representations ------------------------------------------------------------------------------


async def test_binary_resource_in_and_out_as_fhir_json(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    data = content_with_canary(5000)
    sent = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": f"Patient/{patient_id}"},
        "data": base64.b64encode(data).decode(),
    }
    created = await fhir.post("/Binary", json=sent, headers={"x-patient-key": key, "content-type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    assert "data" not in created.json()
    binary_id = created.json()["id"]
    assert (await download(fhir, key, binary_id)).content == data
    as_json = await fhir.get(f"/Binary/{binary_id}", headers={"x-patient-key": key, "accept": "application/fhir+json"})
    assert as_json.headers["content-type"].startswith("application/fhir+json")
    assert base64.b64decode(as_json.json()["data"]) == data
    assert as_json.json()["meta"]["versionId"] == "1"
    formatted = await fhir.get(f"/Binary/{binary_id}", params={"_format": "json"}, headers={"x-patient-key": key, "accept": "*/*"})
    assert base64.b64decode(formatted.json()["data"]) == data
    refused = await download(fhir, key, binary_id, accept="image/png")
    assert refused.status_code == 406
    # Search and history go to records like other types: metadata only, never content.
    listing = await fhir.get("/Binary", params={"_id": binary_id})
    assert [e["resource"]["id"] for e in listing.json()["entry"]] == [binary_id]
    history = await fhir.get(f"/Binary/{binary_id}/_history", headers={"x-patient-key": key})
    assert history.status_code == 200
    assert "data" not in history.json()["entry"][0]["resource"]
    assert "extension" not in history.json()["entry"][0]["resource"].get("meta", {})


async def test_update_makes_a_new_version_and_a_failed_commit_leaves_no_blob(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh
) -> None:
    key, patient_id = patient
    first, second = os.urandom(1000), os.urandom(2000)
    binary_id = await upload(fhir, key, patient_id, first, "text/plain")
    headers = {"x-patient-key": key, "x-security-context": f"Patient/{patient_id}", "content-type": "text/csv"}
    updated = await fhir.put(f"/Binary/{binary_id}", content=second, headers={**headers, "if-match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    current = await download(fhir, key, binary_id)
    assert current.content == second and current.headers["content-type"] == "text/csv"
    old = await fhir.get(f"/Binary/{binary_id}/_history/1", headers={"x-patient-key": key, "accept": "*/*"})
    assert old.content == first and old.headers["content-type"] == "text/plain"
    before = await blob_rows(mesh)
    files_before = blob_files(mesh)
    stale = await fhir.put(f"/Binary/{binary_id}", content=os.urandom(3000), headers={**headers, "if-match": 'W/"1"'})
    assert stale.status_code == 412
    assert await blob_rows(mesh) == before  # the uploaded blob was deleted again
    assert blob_files(mesh) == files_before
    missing = await fhir.put("/Binary/does-not-exist", content=b"x", headers=headers)
    assert missing.status_code == 404
    assert await blob_rows(mesh) == before


async def test_delete_then_read_is_gone(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    binary_id = await upload(fhir, key, patient_id, b"to be deleted")
    assert (await fhir.delete(f"/Binary/{binary_id}", headers={"x-patient-key": key})).status_code == 204
    assert (await download(fhir, key, binary_id)).status_code == 410


# -- keys and security context ----------------------------------------------------------------------


async def test_security_context_and_keys_are_checked(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    key, patient_id = patient
    other_key = new_patient_key()
    other_patient = await create_patient(fhir, other_key)
    before = await blob_rows(mesh)
    no_context = await fhir.post("/Binary", content=b"abc", headers={"content-type": "text/plain", "x-patient-key": key})
    assert no_context.status_code == 400
    assert no_context.json()["issue"][0]["details"]["coding"][0]["code"] == "security-context-required"
    not_a_patient = await fhir.post(
        "/Binary", content=b"abc", headers={"content-type": "text/plain", "x-patient-key": key, "x-security-context": "Group/1"}
    )
    assert not_a_patient.status_code == 422
    unknown = await fhir.post(
        "/Binary", content=b"abc", headers={"content-type": "text/plain", "x-patient-key": key, "x-security-context": "Patient/nobody"}
    )
    assert unknown.status_code == 422
    for wrong in (new_patient_key(), other_key):
        foreign = await fhir.post(
            "/Binary",
            content=b"abc",
            headers={"content-type": "text/plain", "x-patient-key": wrong, "x-security-context": f"Patient/{patient_id}"},
        )
        assert foreign.status_code == 403
    no_key = await fhir.post(
        "/Binary", content=b"abc", headers={"content-type": "text/plain", "x-security-context": f"Patient/{patient_id}"}
    )
    assert no_key.status_code == 401
    assert await blob_rows(mesh) == before  # refused before any upload

    secret = content_with_canary(300)
    binary_id = await upload(fhir, key, patient_id, secret, "text/plain")
    assert (await download(fhir, "", binary_id)).status_code in (400, 401)
    for wrong in (new_patient_key(), other_key):
        refused = await download(fhir, wrong, binary_id)
        assert refused.status_code == 403
        assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "wrong-patient-key"
        assert secret not in refused.content
    moved = await fhir.put(
        f"/Binary/{binary_id}",
        content=b"x",
        headers={"content-type": "text/plain", "x-patient-key": other_key, "x-security-context": f"Patient/{other_patient}"},
    )
    assert moved.status_code == 422
    async with mesh.client() as unauthenticated:
        assert (await unauthenticated.get(f"/fhir/Binary/{binary_id}", headers={"x-patient-key": key})).status_code == 401
    no_context = await fhir.post("/Binary", content=b"x", headers={"x-patient-key": key})
    assert no_context.status_code == 400
    assert no_context.json()["issue"][0]["details"]["coding"][0]["code"] == "security-context-required"


# -- attachments and bundles -----------------------------------------------------------------------


async def test_a_malformed_content_type_is_refused_and_nothing_is_stored(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh
) -> None:
    """A Binary's type is sent back as the Content-Type of its downloads: it must be a
    media type, raw or in FHIR JSON."""
    key, patient_id = patient
    before = await blob_rows(mesh)
    headers = {"x-patient-key": key, "x-security-context": f"Patient/{patient_id}"}
    for content_type in ("not a type", "text/" + "x" * 300, "text/plain; charset"):
        raw = await fhir.post("/Binary", content=b"data", headers=headers | {"content-type": content_type})
        assert raw.status_code == 400, (content_type, raw.text)
        assert raw.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid-content-type"
        resource = {"resourceType": "Binary", "contentType": content_type, "data": "ZGF0YQ=="}
        as_json = await fhir.post("/Binary", content=json.dumps(resource), headers=headers | {"content-type": "application/fhir+json"})
        assert as_json.status_code == 400, (content_type, as_json.text)
    assert await blob_rows(mesh) == before
    binary_id = await upload(fhir, key, patient_id, b"data", "text/plain; charset=utf-8")
    assert (await download(fhir, key, binary_id)).headers["content-type"] == "text/plain; charset=utf-8"


async def test_attachments_pointing_at_binary_resolve(fhir: httpx.AsyncClient, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    report = content_with_canary(20_000)
    binary_id = await upload(fhir, key, patient_id, report, "application/pdf")
    attachment = {"contentType": "application/pdf", "url": f"Binary/{binary_id}", "size": len(report)}
    for resource_type, resource in _attachment_resources(patient_id, attachment).items():
        created = await fhir.post(f"/{resource_type}", json=resource, headers={"x-patient-key": key})
        assert created.status_code == 201, created.text
        read = (await fhir.get(f"/{resource_type}/{created.json()['id']}", headers={"x-patient-key": key})).json()
        url = _attachment_of(resource_type, read)["url"]
        assert url == f"Binary/{binary_id}"
        assert (await download(fhir, key, url.split("/")[1])).content == report


def _attachment_resources(patient_id: str, attachment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    subject = {"reference": f"Patient/{patient_id}"}
    return {
        "DocumentReference": {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": subject,
            "content": [{"attachment": attachment}],
        },
        "DiagnosticReport": {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "report"},
            "subject": subject,
            "presentedForm": [attachment],
        },
        "Media": {"resourceType": "Media", "status": "completed", "subject": subject, "content": attachment},
        "Observation": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "scan"},
            "subject": subject,
            # R4 Observation has no Attachment element of its own: an extension carries it.
            "extension": [{"url": OBSERVATION_ATTACHMENT, "valueAttachment": attachment}],
        },
    }


def _attachment_of(resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
    if resource_type == "DocumentReference":
        return dict(resource["content"][0]["attachment"])
    if resource_type == "DiagnosticReport":
        return dict(resource["presentedForm"][0])
    if resource_type == "Media":
        return dict(resource["content"])
    return dict(resource["extension"][0]["valueAttachment"])


async def test_binary_in_a_transaction_bundle(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    key, patient_id = patient
    data = content_with_canary(3 * SEG + 7)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8f0c1a52-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "securityContext": {"reference": f"Patient/{patient_id}"},
                    "data": base64.b64encode(data).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "content": [{"attachment": {"contentType": "application/pdf", "url": "urn:uuid:8f0c1a52-0000-4000-8000-000000000001"}}],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    resp = await fhir.post("", json=bundle, headers={"x-patient-key": key})
    assert resp.status_code == 200, resp.text
    binary_location, document_location = (e["response"]["location"] for e in resp.json()["entry"])
    document = (await fhir.get("/" + document_location.split("/_history")[0], headers={"x-patient-key": key})).json()
    url = document["content"][0]["attachment"]["url"]
    assert url == binary_location.split("/_history")[0]
    assert (await download(fhir, key, url.split("/")[1])).content == data

    # A failed transaction leaves no blob behind.
    before = await blob_rows(mesh)
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/nobody"}
    failed = await fhir.post("", json=bundle, headers={"x-patient-key": key})
    assert failed.status_code >= 400
    assert await blob_rows(mesh) == before


# -- tampering and failures ----------------------------------------------------------------------


@pytest.fixture
async def stored_blob(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> AsyncIterator[tuple[str, str, bytes, Path]]:
    key, patient_id = patient
    size = 4 * SEG + 11  # a size no other test uses, to find its object
    data = content_with_canary(size)
    binary_id, path = await upload_and_locate(fhir, mesh, key, patient_id, data)
    original = path.read_bytes()
    yield key, binary_id, data, path
    path.write_bytes(original)


def _segments(stored: bytes) -> list[bytes]:
    body = stored[HEADER:]
    return [body[i : i + SEG + TAG] for i in range(0, len(body), SEG + TAG)]


@pytest.mark.parametrize(
    "change",
    ["header byte", "first segment byte", "middle tag byte", "last byte", "truncated", "truncated at a boundary", "reordered", "swapped"],
)
async def test_a_changed_blob_is_refused_whole(
    fhir: httpx.AsyncClient, stored_blob: tuple[str, str, bytes, Path], mesh: RunningMesh, change: str
) -> None:
    key, binary_id, data, path = stored_blob
    stored = path.read_bytes()
    segments = _segments(stored)
    if change.endswith("byte"):
        position = {"header byte": 40, "first segment byte": HEADER + 3, "middle tag byte": HEADER + 2 * (SEG + TAG) - 2, "last byte": -1}[
            change
        ]
        tampered = bytearray(stored)
        tampered[position] ^= 0x20
        variant = bytes(tampered)
    elif change == "truncated":
        variant = stored[:-5]
    elif change == "truncated at a boundary":
        variant = stored[: HEADER + 4 * (SEG + TAG)]
    elif change == "reordered":
        variant = stored[:HEADER] + segments[1] + segments[0] + b"".join(segments[2:])
    else:  # swapped with the same segment of another blob of the same patient and size
        _, other_path = await upload_and_locate(fhir, mesh, key, await _patient_of(fhir, key, binary_id), data)
        other = other_path.read_bytes()
        assert other != stored
        variant = stored[:HEADER] + _segments(other)[0] + b"".join(segments[1:])
    path.write_bytes(variant)
    resp = await download(fhir, key, binary_id)
    assert resp.status_code == 500
    assert resp.json()["issue"][0]["details"]["coding"][0]["code"] == "integrity-failure"
    assert data[:100] not in resp.content
    if len(variant) == len(stored) and change != "last byte":
        # A range over the changed segments fails too. (A range that does not touch a
        # changed segment is served: only the segments read are authenticated.)
        ranged = await download(fhir, key, binary_id, range=f"bytes={SEG - 10}-{SEG + 10}")
        assert ranged.status_code == 500
    assert "integrity failure" in mesh.logs("fileservice")


async def _patient_of(fhir: httpx.AsyncClient, key: str, binary_id: str) -> str:
    resource = (await fhir.get(f"/Binary/{binary_id}", headers={"x-patient-key": key})).json()
    return str(resource["securityContext"]["reference"]).split("/")[1]


async def test_a_failure_mid_stream_aborts_the_transfer(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    """Past the first 4 MiB the answer has started: a bad segment then cuts the
    connection (no final chunk, short of Content-Length); the client never gets a
    complete-looking file, and everything it did get was authenticated."""
    key, patient_id = patient
    size = 6 * MIB + 5
    data = os.urandom(size)
    binary_id, path = await upload_and_locate(fhir, mesh, key, patient_id, data)
    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[-1000] ^= 1
    path.write_bytes(bytes(tampered))
    received = bytearray()

    async def fetch() -> None:
        async with fhir.stream("GET", f"/Binary/{binary_id}", headers={"x-patient-key": key, "accept": "*/*"}) as resp:
            assert resp.status_code == 200
            async for part in resp.aiter_raw():
                received.extend(part)

    try:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await fetch()
        assert 0 < len(received) < size
        assert data.startswith(bytes(received))
    finally:
        path.write_bytes(original)


def _raw_request(mesh: RunningMesh, head: bytes, body: bytes, *, close_early: bool) -> bytes:
    host, port = "127.0.0.1", mesh.layout.tls_port("gateway")
    context = ssl.create_default_context(cafile=str(mesh.state_dir / "ca.pem"))
    with socket.create_connection((host, port), timeout=30) as plain, context.wrap_socket(plain, server_hostname=host) as tls:
        tls.sendall(head + body)
        if close_early:
            return b""
        tls.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = tls.recv(65536)
            if not piece:
                break
            answer += piece
        return answer


async def test_an_upload_cut_off_midway_leaves_nothing(fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh) -> None:
    key, patient_id = patient
    before_rows, before_files = await blob_rows(mesh), blob_files(mesh)
    before_binaries = await mesh.db_execute("records", "SELECT count(*) FROM resources WHERE resource_type = 'Binary'")
    before_pending = await mesh.db_execute("records", "SELECT count(*) FROM pending_uploads")
    start, log_sizes = await last_seq(mesh), {s: len(mesh.logs(s)) for s in TLS_PORTS}
    for declared in (20 * MIB, None):  # with a Content-Length, and chunked
        size_header = f"content-length: {declared}\r\n" if declared else "transfer-encoding: chunked\r\n"
        head = (
            f"POST /fhir/Binary HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {mesh.dev_token}\r\n"
            f"x-patient-key: {key}\r\nx-security-context: Patient/{patient_id}\r\ncontent-type: application/octet-stream\r\n"
            f"{size_header}\r\n"
        ).encode()
        part = content_with_canary(5 * MIB)
        body = part if declared else f"{len(part):x}\r\n".encode() + part + b"\r\n"
        await asyncio.to_thread(_raw_request, mesh, head, body, close_early=True)
    # The abort travels gateway -> api -> fileservice (and records); api cleans up, then
    # records the outcome of each attempt: 499, the client closed the request.
    deadline = time.monotonic() + 30
    while len(outcomes := [e for e in await events_since(mesh, start) if e[0] == "fhir.create"]) < 2:
        assert time.monotonic() < deadline, await events_since(mesh, start)
        await asyncio.sleep(0.2)
    assert [(event, outcome, rtype) for event, outcome, rtype, *_ in outcomes] == [("fhir.create", 499, "Binary")] * 2
    # A client going away is no failure of the platform's: no 5xx, no error logged.
    for service in TLS_PORTS:  # every service
        added = mesh.logs(service)[log_sizes[service] :]
        assert '"level":"error"' not in added, (service, added[-2000:])
        assert '"status":5' not in added and "peer unavailable" not in added, (service, added[-2000:])
    assert list((mesh.state_dir / "blobs" / "incoming").glob("*")) == []
    # api dropped the pending uploads of both attempts at once (no work left for the orphan sweep).
    assert await mesh.db_execute("records", "SELECT count(*) FROM pending_uploads") == before_pending
    assert blob_files(mesh) == before_files
    assert await blob_rows(mesh) == before_rows
    after = await mesh.db_execute("records", "SELECT count(*) FROM resources WHERE resource_type = 'Binary'")
    assert after == before_binaries
    assert (await fhir.get("/metadata")).status_code == 200  # and the mesh still answers


def _stalled_request(mesh: RunningMesh, head: bytes, body: bytes) -> tuple[bytes, float, bool]:
    """Send ``head`` and ``body`` (less than the head declares), then nothing: the
    gateway's answer, the seconds it took, and whether the gateway then closed the
    connection."""
    host, port = "127.0.0.1", mesh.layout.tls_port("gateway")
    context = ssl.create_default_context(cafile=str(mesh.state_dir / "ca.pem"))
    with socket.create_connection((host, port), timeout=30) as plain, context.wrap_socket(plain, server_hostname=host) as tls:
        tls.sendall(head + body)
        sent = time.monotonic()
        answer = read_http_answer(tls)
        waited = time.monotonic() - sent
        try:
            closed = tls.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            closed = True
        return answer, waited, closed


async def test_an_upload_that_stalls_is_given_up_and_leaves_nothing(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh
) -> None:
    """A client that stops sending mid-body (GATEWAY_CLIENT_IDLE_SECONDS, 4 s in the test
    mesh) gets a 408 and its connection closed; the hops behind the gateway are freed
    and nothing of the upload is kept."""
    key, patient_id = patient
    before_rows, before_files = await blob_rows(mesh), blob_files(mesh)
    before_pending = await mesh.db_execute("records", "SELECT count(*) FROM pending_uploads")
    start = await last_seq(mesh)
    head = (
        f"POST /fhir/Binary HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {mesh.dev_token}\r\n"
        f"x-patient-key: {key}\r\nx-security-context: Patient/{patient_id}\r\ncontent-type: application/octet-stream\r\n"
        f"content-length: {20 * MIB}\r\n\r\n"
    ).encode()
    answer, waited, closed = await asyncio.to_thread(_stalled_request, mesh, head, content_with_canary(3 * MIB))
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"connection: close" in head_part.lower()
    assert json.loads(body)["issue"][0]["details"]["coding"][0]["code"] == "request-timeout"
    assert 3.5 < waited < 20, waited
    assert closed
    # api saw the gateway give up the request: outcome 499, and nothing is left behind.
    deadline = time.monotonic() + 30
    while not (outcomes := [e for e in await events_since(mesh, start) if e[0] == "fhir.create"]):
        assert time.monotonic() < deadline, await events_since(mesh, start)
        await asyncio.sleep(0.2)
    assert [(event, outcome) for event, outcome, *_ in outcomes] == [("fhir.create", 499)]
    assert list((mesh.state_dir / "blobs" / "incoming").glob("*")) == []
    assert await mesh.db_execute("records", "SELECT count(*) FROM pending_uploads") == before_pending
    assert blob_files(mesh) == before_files
    assert await blob_rows(mesh) == before_rows
    assert await upload(fhir, key, patient_id, os.urandom(MIB))  # the mesh still takes uploads


async def test_a_small_body_that_stalls_is_given_up(mesh: RunningMesh, patient: tuple[str, str]) -> None:
    """A body small enough to be read whole (here a FHIR resource) may not pause
    longer than a streamed one: a client sending a part of it then nothing gets a 408."""
    _, patient_id = patient
    resource = json.dumps({"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient_id}"}}).encode()
    head = (
        f"POST /fhir/Observation HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {mesh.dev_token}\r\n"
        f"content-type: application/fhir+json\r\ncontent-length: {len(resource)}\r\n\r\n"
    ).encode()
    answer, waited, closed = await asyncio.to_thread(_stalled_request, mesh, head, resource[:20])
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert 3.5 < waited < 20, waited
    assert closed


async def test_a_download_the_client_stops_reading_is_no_error(
    fhir: httpx.AsyncClient, patient: tuple[str, str], mesh: RunningMesh
) -> None:
    """A viewer closing a large file after its first bytes: every hop stops streaming,
    and none logs an error or answers a 5xx for it."""
    key, patient_id = patient
    binary_id = await upload(fhir, key, patient_id, os.urandom(40 * MIB))
    log_sizes = {s: len(mesh.logs(s)) for s in TLS_PORTS}
    async with fhir.stream("GET", f"/Binary/{binary_id}", headers={"x-patient-key": key, "accept": "*/*"}) as resp:
        assert resp.status_code == 200
        async for _ in resp.aiter_raw():
            break  # and the connection is closed with the response
    await asyncio.sleep(2)  # for the hops to notice
    for service in TLS_PORTS:
        added = mesh.logs(service)[log_sizes[service] :]
        assert '"level":"error"' not in added, (service, added[-2000:])
        assert '"status":5' not in added and "peer unavailable" not in added, (service, added[-2000:])
    assert (await download(fhir, key, binary_id)).status_code == 200  # and the file is still whole


async def test_a_declared_size_over_the_limit_is_refused_at_once(mesh: RunningMesh, patient: tuple[str, str]) -> None:
    key, patient_id = patient
    head = (
        f"POST /fhir/Binary HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {mesh.dev_token}\r\n"
        f"x-patient-key: {key}\r\nx-security-context: Patient/{patient_id}\r\ncontent-type: application/octet-stream\r\n"
        f"content-length: {3 * 1024**3}\r\nconnection: close\r\n\r\n"
    ).encode()
    answer = await asyncio.to_thread(_raw_request, mesh, head, b"", close_early=False)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
