"""Break-glass through the public API: real sign-ins (password + TOTP, DPoP-bound
tokens) through the gateway, api's role checks, keyservice's own workflow, the
real offline tool (`carevault-doctor open`, a subprocess), the patient-scoped
token read through the normal FHIR API, and the audit trail the patient's tenant
reads. Nothing is mocked."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.auth.support import Session, admin_session, ensure_tenant, make_user, refresh, totp_now, user_session
from tests.e2e.test_records import observation
from tests.support import RunningMesh, new_patient_key

TENANT, HOSTING, OTHER = "demo", "hosting", "other"
DOCUMENT = b"%PDF-1.4 written request of the hosting doctor, signed by the care team " + bytes(range(256))
REASON = "Patient lost their phone and key; the care team needs the records."
BREAK_GLASS_EVENTS = (
    "breakglass.requested",
    "breakglass.approved",
    "breakglass.rejected",
    "breakglass.document.read",
    "breakglass.released",
    "breakglass.token.issued",
    "breakglass.closed",
    "breakglass.refused",
)


@dataclass
class Patient:
    session: Session
    patient_id: str
    key: str
    records: list[dict[str, Any]]


async def signed_in(mesh: RunningMesh, tenant: str, roles: list[str], scope: str = "user/*.rs") -> tuple[Session, str]:
    """A user with ``roles`` signed in with password and TOTP; returns the session and the user id."""
    user = await make_user(mesh, tenant, roles, totp=True)
    session = await user_session(mesh, tenant, user["username"], user["password"], totp_now(user["enrolment"]["secret"]), scope=scope)
    return session, str(user["id"])


async def patient_with_records(mesh: RunningMesh, count: int = 3) -> Patient:
    user = await make_user(mesh, TENANT, ["patient"])
    session = await user_session(mesh, TENANT, user["username"], user["password"])
    key = new_patient_key()
    created = await session.request(
        "POST", "/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers={"x-patient-key": key}
    )
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    records = []
    for i in range(count):
        obs = await session.request("POST", "/fhir/Observation", json=observation(patient_id, value=70 + i), headers={"x-patient-key": key})
        assert obs.status_code == 201, obs.text
        records.append(obs.json())
    return Patient(session, patient_id, key, records)


# A scanned document of the patient's: its bytes must come back identical through break-glass.
SCAN = b"%PDF-1.4 scanned referral letter " + bytes(range(256)) * 8


def binary_headers(patient_id: str) -> dict[str, str]:
    return {"content-type": "application/pdf", "x-security-context": f"Patient/{patient_id}"}


async def upload_binary(patient: Patient) -> str:
    """The patient stores a file of their own; its Binary id."""
    stored = await patient.session.request(
        "POST", "/fhir/Binary", content=SCAN, headers={"x-patient-key": patient.key} | binary_headers(patient.patient_id)
    )
    assert stored.status_code == 201, stored.text
    binary_id: str = stored.headers["location"].split("/")[1]
    return binary_id


def document_body(patient_id: str, content: bytes = DOCUMENT, tenant: str = TENANT) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "patient_id": patient_id,
        "reason": REASON,
        "document": {"contentType": "application/pdf", "data": base64.b64encode(content).decode()},
    }


async def open_request(doctor: Session, patient_id: str) -> dict[str, Any]:
    opened = await doctor.request("POST", "/break-glass/requests", json=document_body(patient_id))
    assert opened.status_code == 201, opened.text
    result: dict[str, Any] = opened.json()
    return result


def doctor_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carevault_keyservice.doctor", *args], capture_output=True, text=True, timeout=120)


def problem(resp: httpx.Response) -> str:
    """The problem type's last segment (problem details, or an OperationOutcome under /fhir)."""
    body = resp.json()
    if body.get("resourceType") == "OperationOutcome":
        return str(body["issue"][0]["details"]["coding"][0]["code"])
    return str(body["type"]).rsplit("/", 1)[-1]


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def audit_events(reader: Session, params: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    resp = await reader.request("GET", f"/fhir/AuditEvent?{params}", headers=headers or {})
    assert resp.status_code == 200, resp.text
    return [entry["resource"] for entry in resp.json()["entry"]]


def event_name(event: dict[str, Any]) -> str:
    return str(next(s["code"] for s in event["subtype"] if s["system"] == "https://carevault.dev/audit-event"))


def event_details(event: dict[str, Any]) -> dict[str, str]:
    return {d["type"]: d["valueString"] for entity in event.get("entity", []) for d in entity.get("detail", [])}


def steps_of(events: list[dict[str, Any]], request_id: str) -> list[tuple[str, str, str]]:
    """(event, outcome code, step or problem) of one request's events, oldest first."""
    mine = [e for e in events if event_details(e).get("request") == request_id]
    mine.sort(key=lambda e: next(x["valueInteger"] for x in e["extension"] if x["url"].endswith("audit-sequence")))
    return [(event_name(e), e.get("outcomeDesc", ""), event_details(e).get("problem", event_details(e).get("step", ""))) for e in mine]


def _past(mesh: RunningMesh) -> object:
    past = datetime(2000, 1, 1, tzinfo=UTC)
    return past.isoformat(sep=" ") if mesh.backend == "sqlite" else past


async def test_a_forgotten_key_is_recovered_and_read_through_the_api(mesh: RunningMesh, tmp_path: Path) -> None:
    await ensure_tenant(mesh, HOSTING)
    await ensure_tenant(mesh, OTHER)
    await admin_session(mesh)
    patient = await patient_with_records(mesh)
    neighbour = await patient_with_records(mesh, count=1)
    scan = await upload_binary(patient)
    neighbour_scan = await upload_binary(neighbour)
    # The hosting doctor also administers the platform: api lets them decide, keyservice
    # still refuses their own request (self-approval is keyservice's rule, not api's).
    doctor, doctor_id = await signed_in(mesh, HOSTING, ["hosting-doctor", "platform-admin"])
    plain_doctor, _ = await signed_in(mesh, HOSTING, ["hosting-doctor"])
    approver, approver_id = await signed_in(mesh, TENANT, ["tenant-admin"])
    stranger_admin, _ = await signed_in(mesh, OTHER, ["tenant-admin"])
    auditor, _ = await signed_in(mesh, TENANT, ["auditor"])

    # The client forgets the key. The doctor opens a request, with the written document.
    request = await open_request(doctor, patient.patient_id)
    request_id = request["id"]
    assert request["status"] == "open" and request["requester"] == doctor_id
    assert request["document_sha256"] == hashlib.sha256(DOCUMENT).hexdigest()
    assert request["document"] == {"contentType": "application/pdf", "size": len(DOCUMENT), "sha256": request["document_sha256"]}
    # The document is stored encrypted: neither api's database nor fileservice's store holds it in clear.
    marker = DOCUMENT[:40]
    assert marker not in await mesh.dump_databases()
    assert marker not in mesh.blob_store()

    # Self-approval refused (by keyservice), deciding without the right refused (by api).
    own = await doctor.request("POST", f"/break-glass/requests/{request_id}/decision", json={"approve": True})
    assert own.status_code == 403 and problem(own) == "self-approval", own.text
    for refused_decider in (plain_doctor, stranger_admin):
        other = await refused_decider.request("POST", f"/break-glass/requests/{request_id}/decision", json={"approve": True})
        assert other.status_code == 403, other.text
    # Nothing is released before approval.
    early = await doctor.request("POST", f"/break-glass/requests/{request_id}/package")
    assert early.status_code == 403 and problem(early) == "not-releasable"

    # The approver reads the written request (bound to its hash), then approves.
    document = await approver.request("GET", f"/break-glass/requests/{request_id}/document")
    assert document.status_code == 200 and document.content == DOCUMENT
    assert document.headers["content-type"] == "application/pdf"
    assert (await stranger_admin.request("GET", f"/break-glass/requests/{request_id}/document")).status_code == 403
    listed = await approver.request("GET", "/break-glass/requests")
    assert request_id in {r["id"] for r in listed.json()["requests"]}
    assert (await stranger_admin.request("GET", f"/break-glass/requests?tenant={TENANT}")).status_code == 403
    approved = await approver.request("POST", f"/break-glass/requests/{request_id}/decision", json={"approve": True})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == approver_id
    again = await approver.request("POST", f"/break-glass/requests/{request_id}/decision", json={"approve": False})
    assert again.status_code == 409

    # No token before the package was downloaded; only the requester downloads it.
    too_soon = await doctor.request("POST", f"/break-glass/requests/{request_id}/token")
    assert too_soon.status_code == 403 and problem(too_soon) == "break-glass-not-open"
    assert (await plain_doctor.request("POST", f"/break-glass/requests/{request_id}/package")).status_code == 403
    released = await doctor.request("POST", f"/break-glass/requests/{request_id}/package")
    assert released.status_code == 200, released.text
    assert released.headers["cache-control"] == "no-store"
    dev_key_id = next((mesh.state_dir / "doctor" / "public").glob("dev-*.pub")).stem.removeprefix("dev-")
    (package,) = [p for p in released.json()["packages"] if p["doctor_key_id"] == dev_key_id]
    assert (package["tenant"], package["patient_id"]) == (TENANT, patient.patient_id)

    # The offline tool opens it.
    doctor_dir = mesh.state_dir / "doctor"
    package_file = tmp_path / "package.json"
    package_file.write_text(json.dumps(package))
    key_file = tmp_path / "recovered.key"
    opened = doctor_tool(
        "open",
        "--key", str(doctor_dir / "DEV-ONLY-doctor.key"),
        "--passphrase-file", str(doctor_dir / "DEV-ONLY-doctor.passphrase"),
        "--package", str(package_file),
        "--patient-id", patient.patient_id,
        "--out", str(key_file),
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    recovered = key_file.read_text().strip()

    # The patient-scoped token: short-lived, for this patient only, bound to the doctor's DPoP key.
    issued = await doctor.request("POST", f"/break-glass/requests/{request_id}/token")
    assert issued.status_code == 200, issued.text
    grant = issued.json()
    assert (grant["patient"], grant["tenant"], grant["token_type"]) == (patient.patient_id, TENANT, "DPoP")
    claims = claims_of(grant["access_token"])
    assert claims["break_glass"] == request_id and claims["patient"] == patient.patient_id and claims["roles"] == []
    assert claims["exp"] - claims["iat"] == grant["expires_in"] <= 900
    assert doctor.dpop is not None and claims["cnf"]["jkt"] == doctor.dpop.jkt
    glass = Session(mesh, grant["access_token"], doctor.dpop)
    with_key = {"x-patient-key": recovered}

    # The records read back identical through the normal FHIR API.
    for original in patient.records:
        read = await glass.request("GET", f"/fhir/Observation/{original['id']}", headers=with_key)
        assert read.status_code == 200, read.text
        assert read.json() == original
    search = await glass.request("GET", f"/fhir/Observation?subject=Patient/{patient.patient_id}", headers=with_key)
    assert search.status_code == 200 and len(search.json()["entry"]) == len(patient.records)
    assert (await glass.request("GET", f"/fhir/Patient/{patient.patient_id}", headers=with_key)).status_code == 200
    # Files too: the raw content, a range of it, and the Binary resource.
    raw = await glass.request("GET", f"/fhir/Binary/{scan}", headers=with_key | {"accept": "*/*"})
    assert raw.status_code == 200 and raw.content == SCAN, raw.text[:200]
    part = await glass.request("GET", f"/fhir/Binary/{scan}", headers=with_key | {"accept": "*/*", "range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == SCAN[10:20]
    as_json = await glass.request("GET", f"/fhir/Binary/{scan}", headers=with_key)
    assert as_json.status_code == 200 and base64.b64decode(as_json.json()["data"]) == SCAN
    everything = await glass.request("GET", f"/fhir/Patient/{patient.patient_id}/$everything", headers=with_key)
    assert everything.status_code == 200, everything.text
    exported = {e["resource"]["id"] for e in everything.json()["entry"]}
    assert {r["id"] for r in patient.records} | {patient.patient_id} <= exported

    # Refused: another patient (named, or read by id), any write, administration, the doctor's own token on FHIR data.
    other_obs = neighbour.records[0]["id"]
    neighbour_key = {"x-patient-key": neighbour.key}
    for path in (
        f"/fhir/Patient/{neighbour.patient_id}",
        f"/fhir/Observation?subject=Patient/{neighbour.patient_id}",
        f"/fhir/Patient/{neighbour.patient_id}/$everything",
    ):
        refused = await glass.request("GET", path, headers=neighbour_key)
        assert refused.status_code == 403, (path, refused.text)
    by_id = await glass.request("GET", f"/fhir/Observation/{other_obs}", headers=neighbour_key)
    assert by_id.status_code == 403, by_id.text
    assert "valueQuantity" not in by_id.text
    other_file = await glass.request("GET", f"/fhir/Binary/{neighbour_scan}", headers=neighbour_key | {"accept": "*/*"})
    assert other_file.status_code == 403 and SCAN not in other_file.content, other_file.text[:200]
    overwrite = await glass.request(
        "PUT", f"/fhir/Binary/{scan}", content=b"overwritten", headers=with_key | binary_headers(patient.patient_id)
    )
    assert overwrite.status_code == 403, overwrite.text
    write = await glass.request("POST", "/fhir/Observation", json=observation(patient.patient_id), headers=with_key)
    assert write.status_code == 403
    assert (await glass.request("GET", "/admin/users")).status_code == 403
    assert (await glass.request("POST", "/break-glass/requests", json=document_body(patient.patient_id))).status_code == 403
    own_token = await doctor.request(
        "GET", f"/fhir/Observation/{patient.records[0]['id']}", headers=with_key | {"x-patient-id": patient.patient_id}
    )
    assert own_token.status_code == 403

    # Closing the case ends the token at once, and releases nothing more.
    closed = await doctor.request("POST", f"/break-glass/requests/{request_id}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    after = await glass.request("GET", f"/fhir/Observation/{patient.records[0]['id']}", headers=with_key)
    assert after.status_code == 403, after.text
    after_export = await glass.request("GET", f"/fhir/Patient/{patient.patient_id}/$everything", headers=with_key)
    assert after_export.status_code == 403, after_export.text
    after_file = await glass.request("GET", f"/fhir/Binary/{scan}", headers=with_key | {"accept": "*/*"})
    assert after_file.status_code == 403 and SCAN not in after_file.content
    assert (await doctor.request("POST", f"/break-glass/requests/{request_id}/package")).status_code == 403
    assert (await doctor.request("POST", f"/break-glass/requests/{request_id}/token")).status_code == 403

    # Every step is in the patient's tenant's audit trail: the auditor sees them all ...
    events = await audit_events(auditor, "subtype=" + ",".join(BREAK_GLASS_EVENTS) + "&_count=500")
    steps = steps_of(events, request_id)
    expected_in_order = [
        ("breakglass.requested", "HTTP 201", "open"),
        ("breakglass.refused", "HTTP 403", "self-approval"),
        ("breakglass.refused", "HTTP 403", "forbidden"),
        ("breakglass.refused", "HTTP 403", "forbidden"),
        ("breakglass.refused", "HTTP 403", "not-releasable"),
        ("breakglass.document.read", "HTTP 200", "document"),
        ("breakglass.refused", "HTTP 403", "forbidden"),
        ("breakglass.approved", "HTTP 200", "decide"),
        ("breakglass.refused", "HTTP 409", "conflict"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),
        ("breakglass.refused", "HTTP 403", "forbidden"),
        ("breakglass.released", "HTTP 200", "release"),
        ("breakglass.token.issued", "HTTP 200", "token"),
        ("breakglass.closed", "HTTP 200", "close"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),  # the file, after the close
        ("breakglass.refused", "HTTP 403", "not-releasable"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),
    ]
    assert steps == expected_in_order, steps
    requested = next(e for e in events if event_details(e).get("request") == request_id)
    assert requested["agent"][0]["who"]["identifier"]["value"] == doctor_id
    assert requested["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    # ... and the reads with the break-glass token are there too, for the break-glass purpose.
    reads = await audit_events(auditor, f"agent={doctor_id}&subtype=fhir.read&_count=500")
    assert len([e for e in reads if e["outcome"] == "0" and e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"]) >= len(patient.records)
    # The patient, with their key, sees who reached for their records, and why.
    own_view = await audit_events(patient.session, f"patient={patient.patient_id}&_count=500", {"x-patient-key": recovered})
    seen = {event_name(e) for e in own_view if e["agent"][0]["who"]["identifier"]["value"] == doctor_id}
    assert {"breakglass.requested", "breakglass.released", "breakglass.token.issued", "breakglass.closed", "fhir.read"} <= seen
    assert {"breakglass.approved"} <= {event_name(e) for e in own_view}


async def test_rejected_and_expired_requests_release_nothing(mesh: RunningMesh) -> None:
    await ensure_tenant(mesh, HOSTING)
    patient = await patient_with_records(mesh, count=1)
    doctor, _ = await signed_in(mesh, HOSTING, ["hosting-doctor"])
    approver, _ = await signed_in(mesh, TENANT, ["tenant-admin"])
    auditor, _ = await signed_in(mesh, TENANT, ["auditor"])

    rejected = await open_request(doctor, patient.patient_id)
    decision = await approver.request("POST", f"/break-glass/requests/{rejected['id']}/decision", json={"approve": False})
    assert decision.status_code == 200 and decision.json()["status"] == "rejected"
    for step in ("package", "token"):
        refused = await doctor.request("POST", f"/break-glass/requests/{rejected['id']}/{step}")
        assert refused.status_code == 403, refused.text
    assert (await approver.request("POST", f"/break-glass/requests/{rejected['id']}/close")).status_code == 409

    # Approved, downloaded, a token issued: then the approval window ends.
    expiring = await open_request(doctor, patient.patient_id)
    await approver.request("POST", f"/break-glass/requests/{expiring['id']}/decision", json={"approve": True})
    assert (await doctor.request("POST", f"/break-glass/requests/{expiring['id']}/package")).status_code == 200
    issued = await doctor.request("POST", f"/break-glass/requests/{expiring['id']}/token")
    assert issued.status_code == 200, issued.text
    glass = Session(mesh, issued.json()["access_token"], doctor.dpop)
    with_key = {"x-patient-key": patient.key}
    read = await glass.request("GET", f"/fhir/Observation/{patient.records[0]['id']}", headers=with_key)
    assert read.status_code == 200, read.text
    await mesh.db_execute("keyservice", "UPDATE break_glass_requests SET expires_at = $1 WHERE id = $2", _past(mesh), expiring["id"])
    for step in ("package", "token"):
        refused = await doctor.request("POST", f"/break-glass/requests/{expiring['id']}/{step}")
        assert refused.status_code == 403 and "expired" in refused.json()["detail"], refused.text
    late = await glass.request("GET", f"/fhir/Observation/{patient.records[0]['id']}", headers=with_key)
    assert late.status_code == 403, late.text
    listing = (await approver.request("GET", "/break-glass/requests")).json()["requests"]
    assert {r["id"]: r["status"] for r in listing}[expiring["id"]] == "expired"

    events = await audit_events(auditor, "subtype=" + ",".join(BREAK_GLASS_EVENTS) + "&_count=500")
    assert [s[0] for s in steps_of(events, rejected["id"])] == [
        "breakglass.requested", "breakglass.rejected", "breakglass.refused", "breakglass.refused", "breakglass.refused",
    ]  # fmt: skip
    assert not [s for s in steps_of(events, rejected["id"]) if s[0] in ("breakglass.released", "breakglass.token.issued")]
    assert [s for s in steps_of(events, expiring["id"]) if s[0] == "breakglass.refused"] == [
        ("breakglass.refused", "HTTP 403", "not-releasable"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),
        ("breakglass.refused", "HTTP 403", "break-glass-not-open"),
    ]


async def test_a_hosting_doctor_without_second_factor_is_refused(mesh: RunningMesh) -> None:
    await ensure_tenant(mesh, HOSTING)
    patient = await patient_with_records(mesh, count=1)
    admin = await admin_session(mesh)
    auditor, _ = await signed_in(mesh, TENANT, ["auditor"])
    # Signed in with a password only, then made a hosting doctor: the refreshed token
    # carries the role but not the second factor.
    staff = await make_user(mesh, HOSTING, ["practitioner"])
    session = await user_session(mesh, HOSTING, staff["username"], staff["password"], scope="user/*.rs offline_access")
    promoted = await admin.request("PUT", f"/admin/users/{staff['id']}/roles", json={"roles": ["hosting-doctor"]})
    assert promoted.status_code == 200, promoted.text
    fresh = await refresh(session)
    assert fresh.status_code == 200, fresh.text
    session.token = fresh.json()["access_token"]
    assert claims_of(session.token)["roles"] == ["hosting-doctor"]
    refused = await session.request("POST", "/break-glass/requests", json=document_body(patient.patient_id))
    assert refused.status_code == 403 and problem(refused) == "second-factor-required", refused.text
    listing = await session.request("GET", f"/break-glass/requests?tenant={TENANT}")
    assert listing.status_code == 403 and problem(listing) == "second-factor-required"
    # The refused attempt is in the patient's tenant's trail, with the patient's pseudonym.
    events = await audit_events(auditor, f"subtype=breakglass.refused&agent={staff['id']}")
    assert [(event_details(e)["step"], event_details(e)["problem"], e["outcomeDesc"]) for e in events] == [
        ("open", "second-factor-required", "HTTP 403")
    ]
    assert events[0]["entity"][0]["role"]["display"] == "Patient"
    # Nothing was opened for that patient.
    doctor, _ = await signed_in(mesh, HOSTING, ["hosting-doctor"])
    listed = await doctor.request("GET", f"/break-glass/requests?tenant={TENANT}")
    assert patient.patient_id not in {r["patient_id"] for r in listed.json()["requests"]}


async def test_bad_requests_get_clear_problems_and_open_nothing(mesh: RunningMesh) -> None:
    await ensure_tenant(mesh, HOSTING)
    patient = await patient_with_records(mesh, count=1)
    doctor, _ = await signed_in(mesh, HOSTING, ["hosting-doctor"])
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            document_body(patient.patient_id) | {"document": {"contentType": "application/pdf", "data": "not base64!"}},
            422,
            "invalid-document",
        ),
        (document_body(patient.patient_id, content=b""), 422, "unprocessable"),
        (document_body(patient.patient_id) | {"document": {"contentType": "text/html", "data": "PHNjcmlwdD4="}}, 422, "unprocessable"),
        (document_body(patient.patient_id) | {"reason": "short"}, 422, "unprocessable"),
        (document_body(patient.patient_id, tenant="no-such-tenant"), 404, "not-found"),
        (document_body("no-such-patient"), 404, "not-found"),
        (document_body(patient.patient_id, content=b"x" * (10 * 1024 * 1024 + 1)), 413, "payload-too-large"),
    ]
    for body, status, code in cases:
        resp = await doctor.request("POST", "/break-glass/requests", json=body)
        assert resp.status_code == status and problem(resp) == code, (code, resp.status_code, resp.text[:300])
    for path in ("/break-glass/requests/not-a-request", "/break-glass/requests/00000000-0000-4000-8000-000000000000"):
        assert (await doctor.request("GET", path)).status_code == 404
    listed = await doctor.request("GET", f"/break-glass/requests?tenant={TENANT}")
    assert patient.patient_id not in {r["patient_id"] for r in listed.json()["requests"]}
