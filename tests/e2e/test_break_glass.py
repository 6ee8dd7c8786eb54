"""The hosting doctor recovers a patient's key only through an approved request.

Here the workflow is driven at keyservice's boundary with api's own mTLS identity
(keyservice enforces it whatever api says), and the key is recovered with the real
offline tool, `carevault-doctor`. The same story through the public API, with
sign-in, roles, the break-glass token and the audit trail, is
tests/e2e/test_break_glass_api.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_records import create_patient, observation
from tests.support import RunningMesh, new_patient_key, remember_secret

DOCUMENT = b"%PDF-1.4 written request of the hosting doctor"


def keyservice(mesh: RunningMesh, identity: str = "api") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=mesh.layout.url("keyservice"), verify=mesh.ssl_context(identity), timeout=30)


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carevault_keyservice.doctor", *args], capture_output=True, text=True, timeout=120)


async def open_request(ks: httpx.AsyncClient, patient_id: str, requester: str = "doctor-1") -> dict[str, Any]:
    body = {
        "tenant": "dev",
        "patient_id": patient_id,
        "requester": requester,
        "reason": "Patient lost their phone and key; care team needs the records.",
        "document_sha256": hashlib.sha256(DOCUMENT).hexdigest(),
    }
    resp = await ks.post("/break-glass/requests", json=body)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


@pytest.fixture
async def patient_with_records(mesh: RunningMesh) -> tuple[str, str, list[dict[str, Any]]]:
    key = new_patient_key()
    async with mesh.fhir() as fhir:
        patient_id = await create_patient(fhir, key)
        created = [
            (await fhir.post("/Observation", json=observation(patient_id, value=70 + i), headers={"x-patient-key": key})).json()
            for i in range(3)
        ]
    return key, patient_id, created


async def test_decisions_sent_at_once_on_one_request_one_is_taken_the_rest_get_409(
    mesh: RunningMesh, patient_with_records: tuple[str, str, list[dict[str, Any]]]
) -> None:
    """Approvals and rejections of one request at once: exactly one decision stands.
    On SQLite each once read the request "open" outside its write's transaction, so
    every one was answered 200 and the last write won over the others' answers."""
    _, patient_id, _ = patient_with_records
    async with keyservice(mesh) as ks:
        for _ in range(3):
            request = await open_request(ks, patient_id)
            decide = f"/break-glass/requests/{request['id']}/decision"
            answers = await asyncio.gather(*(ks.post(decide, json={"decided_by": f"admin-{i}", "approve": i % 2 == 0}) for i in range(6)))
            assert sorted(a.status_code for a in answers) == [200] + [409] * 5, [a.text[:200] for a in answers]
            taken = next(a.json() for a in answers if a.status_code == 200)
            stored = (await ks.get(f"/break-glass/requests/{request['id']}")).json()
            assert (stored["status"], stored["decided_by"]) == (taken["status"], taken["decided_by"])


async def test_forgotten_key_is_recovered_through_an_approved_request(
    mesh: RunningMesh, patient_with_records: tuple[str, str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, patient_id, created = patient_with_records
    async with keyservice(mesh) as ks:
        request = await open_request(ks, patient_id)
        assert request["status"] == "open"
        self_approval = await ks.post(f"/break-glass/requests/{request['id']}/decision", json={"decided_by": "doctor-1", "approve": True})
        assert self_approval.status_code == 403
        assert self_approval.json()["type"].endswith("/self-approval")
        early = await ks.post(f"/break-glass/requests/{request['id']}/release", json={"requester": "doctor-1"})
        assert early.status_code == 403
        approved = await ks.post(f"/break-glass/requests/{request['id']}/decision", json={"decided_by": "admin-2", "approve": True})
        assert approved.json()["status"] == "approved"
        again = await ks.post(f"/break-glass/requests/{request['id']}/decision", json={"decided_by": "admin-3", "approve": False})
        assert again.status_code == 409
        stranger = await ks.post(f"/break-glass/requests/{request['id']}/release", json={"requester": "admin-2"})
        assert stranger.status_code == 403
        released = await ks.post(f"/break-glass/requests/{request['id']}/release", json={"requester": "doctor-1"})
        assert released.status_code == 200
        dev_key_id = next((mesh.state_dir / "doctor" / "public").glob("dev-*.pub")).stem.removeprefix("dev-")
        (package,) = [p for p in released.json()["packages"] if p["doctor_key_id"] == dev_key_id]

    doctor_dir = mesh.state_dir / "doctor"
    package_file = tmp_path / "package.json"
    package_file.write_text(json.dumps(package))
    key_file = tmp_path / "recovered.key"
    opened = doctor(
        "open",
        "--key", str(doctor_dir / "DEV-ONLY-doctor.key"),
        "--passphrase-file", str(doctor_dir / "DEV-ONLY-doctor.passphrase"),
        "--package", str(package_file),
        "--patient-id", patient_id,
        "--out", str(key_file),
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    recovered = key_file.read_text().strip()
    async with mesh.fhir() as fhir:
        for original in created:
            read = await fhir.get(f"/Observation/{original['id']}", headers={"x-patient-key": recovered})
            assert read.status_code == 200
            assert read.json() == original


async def test_rejected_and_expired_requests_release_nothing(
    mesh: RunningMesh, patient_with_records: tuple[str, str, list[dict[str, Any]]]
) -> None:
    _, patient_id, _ = patient_with_records
    async with keyservice(mesh) as ks:
        rejected = await open_request(ks, patient_id)
        await ks.post(f"/break-glass/requests/{rejected['id']}/decision", json={"decided_by": "admin-2", "approve": False})
        refused = await ks.post(f"/break-glass/requests/{rejected['id']}/release", json={"requester": "doctor-1"})
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/not-releasable")

        expiring = await open_request(ks, patient_id)
        await ks.post(f"/break-glass/requests/{expiring['id']}/decision", json={"decided_by": "admin-2", "approve": True})
        await mesh.db_execute("keyservice", "UPDATE break_glass_requests SET expires_at = $1 WHERE id = $2", _past(mesh), expiring["id"])
        expired = await ks.post(f"/break-glass/requests/{expiring['id']}/release", json={"requester": "doctor-1"})
        assert expired.status_code == 403
        listing = (await ks.get("/break-glass/requests", params={"tenant": "dev"})).json()["requests"]
        assert {r["id"]: r["status"] for r in listing}[expiring["id"]] == "expired"


def _past(mesh: RunningMesh) -> object:
    import datetime as dt

    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return past.isoformat(sep=" ") if mesh.backend == "sqlite" else past


async def test_each_caller_reaches_only_its_own_endpoints(
    mesh: RunningMesh, patient_with_records: tuple[str, str, list[dict[str, Any]]]
) -> None:
    key, patient_id, _ = patient_with_records
    async with keyservice(mesh, "records") as as_records:
        assert (await as_records.get("/break-glass/requests", params={"tenant": "dev"})).status_code == 403
        assert (await as_records.get("/escrow/keyset")).status_code == 200
    async with keyservice(mesh, "api") as as_api:
        escrow = {"tenant": "dev", "patient_id": patient_id, "key_version": 1, "patient_key": key}
        assert (await as_api.post("/escrow/patients", json=escrow)).status_code == 403
        assert (await as_api.get("/escrow/keyset")).status_code == 403
    for identity in ("gateway", "fileservice"):
        async with keyservice(mesh, identity) as other:
            assert (await other.get("/break-glass/requests", params={"tenant": "dev"})).status_code == 403
            assert (await other.get("/escrow/keyset")).status_code == 403


async def test_keyservice_holds_no_patient_key_in_the_clear(
    mesh: RunningMesh, patient_with_records: tuple[str, str, list[dict[str, Any]]]
) -> None:
    key, _, _ = patient_with_records
    import base64

    raw = base64.urlsafe_b64decode(key + "=")
    remember_secret(raw)  # the suite-end scan checks every database and log for it
    rows = await mesh.db_execute("keyservice", "SELECT package FROM escrow_packages")
    assert rows
    for (package,) in rows:
        assert raw not in bytes(package)  # type: ignore[arg-type]
    assert key not in mesh.logs("keyservice")
