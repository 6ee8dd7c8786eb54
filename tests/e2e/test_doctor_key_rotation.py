"""Hosting-doctor keys rotate without losing any patient's escrow:
(a) a key added to keyservice gets each patient's key on its next use;
(b) the doctor's offline tool rewraps every package in bulk, and keyservice takes the upload.
Both suites are exercised: the development key is hybrid (ML-KEM-768 + X25519), the
added key classic (X25519)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from tests.auth.support import Session, admin_session, ensure_tenant, make_user, refresh, user_session
from tests.e2e.test_break_glass import doctor, keyservice, open_request
from tests.e2e.test_break_glass_api import (
    HOSTING,
    TENANT,
    Patient,
    audit_events,
    event_details,
    patient_with_records,
    problem,
    signed_in,
)
from tests.e2e.test_break_glass_api import open_request as open_request_through_api
from tests.e2e.test_records import create_patient, observation
from tests.support import RunningMesh, new_patient_key

ESCROW_EVENTS = "admin.escrow.export,admin.escrow.upload.attempt,admin.escrow.upload,admin.escrow.refused"


def _keygen(tmp_path: Path, suite: str) -> tuple[Path, Path, str]:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    private = tmp_path / f"{suite}.key"
    made = doctor("keygen", "--out", str(private), "--suite", suite, "--passphrase-file", str(passphrase))
    assert made.returncode == 0, made.stderr
    public = Path(str(private) + ".pub")
    key_id = json.loads(public.read_text())["key_id"]
    return private, passphrase, key_id


async def _release(mesh: RunningMesh, patient_id: str) -> list[dict[str, Any]]:
    async with keyservice(mesh) as ks:
        request = await open_request(ks, patient_id)
        await ks.post(f"/break-glass/requests/{request['id']}/decision", json={"decided_by": "admin-2", "approve": True})
        released = await ks.post(f"/break-glass/requests/{request['id']}/release", json={"requester": "doctor-1"})
        packages: list[dict[str, Any]] = released.json()["packages"]
        return packages


def _open(tmp_path: Path, private: Path, passphrase: Path, package: dict[str, Any]) -> str:
    package_file = tmp_path / f"{package['patient_id']}-{package['doctor_key_id']}.json"
    package_file.write_text(json.dumps(package))
    out = tmp_path / f"{package['patient_id']}-{package['doctor_key_id']}.patient-key"
    opened = doctor("open", "--key", str(private), "--passphrase-file", str(passphrase), "--package", str(package_file), "--out", str(out))
    assert opened.returncode == 0, opened.stderr
    return out.read_text().strip()


def _coverage_of(coverage: dict[str, Any], key_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next((k for k in coverage["doctor_keys"] if k["doctor_key_id"] == key_id), {"packages": 0})
    return found


async def _coverage(admin: Session) -> dict[str, Any]:
    resp = await admin.request("GET", "/admin/escrow/coverage")
    assert resp.status_code == 200, resp.text
    coverage: dict[str, Any] = resp.json()
    return coverage


async def _platform_admin_without_second_factor(mesh: RunningMesh) -> Session:
    """Signed in with a password only, then made a platform admin: the refreshed token
    carries the role but not the second factor."""
    staff = await make_user(mesh, HOSTING, ["practitioner"])
    session = await user_session(mesh, HOSTING, staff["username"], staff["password"], scope="user/*.rs offline_access")
    promoted = await (await admin_session(mesh)).request("PUT", f"/admin/users/{staff['id']}/roles", json={"roles": ["platform-admin"]})
    assert promoted.status_code == 200, promoted.text
    fresh = await refresh(session)
    assert fresh.status_code == 200, fresh.text
    session.token = fresh.json()["access_token"]
    return session


async def bulk_rewrap_through_the_api(
    mesh: RunningMesh, tmp_path: Path, new_private: Path, new_passphrase: Path, new_key_id: str, idle: Patient
) -> None:
    admin, admin_id = await signed_in(mesh, HOSTING, ["platform-admin"])
    tenant_admin, _ = await signed_in(mesh, TENANT, ["tenant-admin"])
    weak_admin = await _platform_admin_without_second_factor(mesh)
    public_dir = mesh.state_dir / "doctor" / "public"
    dev_id = next(public_dir.glob("dev-*.pub")).stem.removeprefix("dev-")
    export_path = f"/admin/escrow/export?doctor_key_id={dev_id}"

    # Only a platform admin with a second factor: the others are refused, and get nothing.
    for refused_caller, code in ((tenant_admin, "forbidden"), (weak_admin, "second-factor-required")):
        for method, path in (("GET", export_path), ("POST", "/admin/escrow/uploads"), ("GET", "/admin/escrow/coverage")):
            refused = await refused_caller.request(method, path, content=b"{}\n")
            assert refused.status_code == 403 and problem(refused) == code, (method, path, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")

    before = await _coverage(admin)
    assert _coverage_of(before, new_key_id)["packages"] < _coverage_of(before, dev_id)["packages"]

    exported = await admin.request("GET", export_path)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/jsonl")
    assert exported.headers["cache-control"] == "no-store"
    lines = exported.text.splitlines()
    # The count announced is the count streamed (a cut stream would show).
    assert len(lines) == int(exported.headers["escrow-packages"]) == _coverage_of(before, dev_id)["packages"]
    assert any(json.loads(line)["patient_id"] == idle.patient_id for line in lines)
    export_file = tmp_path / "export.jsonl"
    export_file.write_text(exported.text)

    rewrapped = tmp_path / "rewrapped.jsonl"
    doctor_dir = mesh.state_dir / "doctor"
    done = doctor(
        "re-escrow", "--old-key", str(doctor_dir / "DEV-ONLY-doctor.key"),
        "--passphrase-file", str(doctor_dir / "DEV-ONLY-doctor.passphrase"),
        "--new-public", str(Path(str(new_private) + ".pub")), "--in", str(export_file), "--out", str(rewrapped),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    upload_lines = rewrapped.read_text().splitlines()
    assert len(upload_lines) == len(lines)

    # Bad uploads get a problem and store nothing: a malformed line (api refuses it before
    # keyservice is asked), a line whose header names another patient (keyservice refuses
    # it after the good lines before it: its one transaction stores none of them).
    forged = json.dumps(dict(json.loads(upload_lines[0]), patient_id="someone-else"))
    bad_uploads = [
        ("\n".join([*upload_lines, "{not json"]), 422, "invalid-escrow-upload"),
        ("\n".join([*upload_lines, json.dumps({"tenant": TENANT})]), 422, "invalid-escrow-upload"),
        ("\n".join([*upload_lines, forged]), 422, "invalid-escrow-upload"),
        ("\n\n", 422, "invalid-escrow-upload"),
    ]
    for body, status, code in bad_uploads:
        refused = await admin.request("POST", "/admin/escrow/uploads", content=body.encode())
        assert refused.status_code == status and problem(refused) == code, refused.text
        assert _coverage_of(await _coverage(admin), new_key_id)["packages"] == _coverage_of(before, new_key_id)["packages"]

    uploaded = await admin.request("POST", "/admin/escrow/uploads", content=rewrapped.read_bytes())
    assert uploaded.status_code == 200, uploaded.text
    result = uploaded.json()
    assert result["added"] >= 1 and result["added"] + result["already_present"] == len(upload_lines)
    after = await _coverage(admin)
    assert _coverage_of(after, new_key_id)["packages"] == _coverage_of(before, new_key_id)["packages"] + result["added"]
    assert _coverage_of(after, new_key_id)["missing"] <= _coverage_of(after, dev_id)["missing"]
    # Escrow is idempotent: the same upload again adds nothing.
    again = await admin.request("POST", "/admin/escrow/uploads", content=rewrapped.read_bytes())
    assert again.status_code == 200 and again.json() == {"added": 0, "already_present": len(upload_lines)}, again.text

    # Break-glass through the API: the idle patient's package for the new key opens the records.
    hosting_doctor, _ = await signed_in(mesh, HOSTING, ["hosting-doctor"])
    request = await open_request_through_api(hosting_doctor, idle.patient_id)
    approved = await tenant_admin.request("POST", f"/break-glass/requests/{request['id']}/decision", json={"approve": True})
    assert approved.status_code == 200, approved.text
    released = await hosting_doctor.request("POST", f"/break-glass/requests/{request['id']}/package")
    assert released.status_code == 200, released.text
    package = next(p for p in released.json()["packages"] if p["doctor_key_id"] == new_key_id)
    recovered = _open(tmp_path, new_private, new_passphrase, package)
    assert recovered == idle.key
    issued = await hosting_doctor.request("POST", f"/break-glass/requests/{request['id']}/token")
    assert issued.status_code == 200, issued.text
    glass = Session(mesh, issued.json()["access_token"], hosting_doctor.dpop)
    for original in idle.records:
        read = await glass.request("GET", f"/fhir/Observation/{original['id']}", headers={"x-patient-key": recovered})
        assert read.status_code == 200 and read.json() == original, read.text
    await hosting_doctor.request("POST", f"/break-glass/requests/{request['id']}/close")

    # The audit trail: counts and doctor key ids, never a package.
    events = await audit_events(admin, f"subtype={ESCROW_EVENTS}&agent={admin_id}&_count=100")
    by_name: dict[str, list[dict[str, str]]] = {}
    for event in events:
        name = next(s["code"] for s in event["subtype"] if s["system"] == "https://carevault.dev/audit-event")
        by_name.setdefault(name, []).append(event_details(event))
    assert [d["doctor_key_id"] for d in by_name["admin.escrow.export"]] == [dev_id]
    assert len(by_name["admin.escrow.upload"]) == 2
    assert sorted(d["problem"] for d in by_name["admin.escrow.refused"]) == ["invalid-escrow-upload"] * 4
    # Two attempts reached keyservice and were stored, one reached it and was refused.
    assert len(by_name["admin.escrow.upload.attempt"]) == 3
    assert all(line.split('"package":"')[1][:40] not in json.dumps(events) for line in upload_lines[:3])
    weak_refusals = await audit_events(admin, "subtype=admin.escrow.refused&_count=100")
    assert {event_details(e)["problem"] for e in weak_refusals} >= {"second-factor-required", "invalid-escrow-upload"}


async def test_added_doctor_key_gets_escrow_on_next_use_and_by_bulk_rewrap(mesh: RunningMesh, tmp_path: Path) -> None:
    key = new_patient_key()
    await ensure_tenant(mesh, HOSTING)
    await admin_session(mesh)
    idle = await patient_with_records(mesh, count=2)
    async with mesh.fhir() as fhir:
        patient_id = await create_patient(fhir, key)
        obs = (await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})).json()

    public_dir = mesh.state_dir / "doctor" / "public"
    private, passphrase, classic_id = _keygen(tmp_path, "classic")
    shutil.copy(Path(str(private) + ".pub"), public_dir / f"{classic_id}.pub")
    try:
        await asyncio.sleep(1.5)  # records' view of the keyset expires (1 s in the test mesh)
        # (a) on next use
        async with mesh.fhir() as fhir:
            assert (await fhir.get(f"/Observation/{obs['id']}", headers={"x-patient-key": key})).status_code == 200
        packages = {p["doctor_key_id"]: p for p in await _release(mesh, patient_id)}
        assert classic_id in packages
        assert _open(tmp_path, private, passphrase, packages[classic_id]) == key

        # (b) in bulk, for a patient whose key was not used since: a platform admin with a
        # second factor exports through the gateway, the doctor's tool rewraps offline, the
        # admin uploads the result; break-glass through the API then opens with the new key.
        await bulk_rewrap_through_the_api(mesh, tmp_path, private, passphrase, classic_id, idle)
    finally:
        (public_dir / f"{classic_id}.pub").unlink()
