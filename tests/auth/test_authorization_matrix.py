"""The authorization matrix, through the gateway: every endpoint x role x own or
other tenant x consent present, absent, revoked or expired gives the allow or
deny documented in docs/security-access.md; zero unexpected allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.auth.support import (
    Session,
    admin_session,
    backend_session,
    ensure_tenant,
    make_backend_client,
    make_user,
    totp_now,
    user_session,
)
from tests.auth.test_sign_in import consent_body, patient_with_record
from tests.e2e.test_records import observation
from tests.support import RunningMesh

CONSENT_STATES = ("absent", "present", "revoked", "expired")


async def _endpoints(actor: Session, patient_id: str, obs_id: str, key: str) -> dict[str, int]:
    h = {"x-patient-key": key}
    return {
        "read Observation/{id}": (await actor.request("GET", f"/fhir/Observation/{obs_id}", headers=h)).status_code,
        "search Observation?subject": (
            await actor.request("GET", f"/fhir/Observation?subject=Patient/{patient_id}", headers=h)
        ).status_code,
        "read Patient/{id}": (await actor.request("GET", f"/fhir/Patient/{patient_id}", headers=h)).status_code,
        "create Observation": (await actor.request("POST", "/fhir/Observation", json=observation(patient_id), headers=h)).status_code,
        "delete Observation/{id} (hint-less)": (await actor.request("DELETE", f"/fhir/Observation/{obs_id}-none", headers=h)).status_code,
    }


async def _set_consent(patient: Session, patient_id: str, grantee: str, kind: str, state: str) -> None:
    if state == "absent":
        return
    end = (datetime.now(UTC) - timedelta(minutes=1)).isoformat() if state == "expired" else None
    granted = await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, grantee, kind, end=end))
    assert granted.status_code == 201, granted.text
    if state == "revoked":
        assert (await patient.request("DELETE", f"/fhir/Consent/{granted.json()['id']}")).status_code == 204


async def test_authorization_matrix(mesh: RunningMesh) -> None:
    await ensure_tenant(mesh, "other")
    patient, patient_id, key, obs_id = await patient_with_record(mesh, "demo")
    unexpected: list[str] = []

    def record(actor: str, tenant: str, state: str, results: dict[str, int], allowed: bool) -> None:
        for endpoint, status in results.items():
            ok = status < 400 or (endpoint.startswith("delete") and status == 404)
            if ok != allowed and not (endpoint.startswith("delete") and allowed):
                unexpected.append(f"{actor} ({tenant} tenant, consent {state}) {endpoint}: {status}")

    # the patient themselves: allowed, no consent involved
    record("patient (self)", "own", "n/a", await _endpoints(patient, patient_id, obs_id, key), True)
    # another patient, staff without a grantee role, and administrators: never
    other_patient_user = await make_user(mesh, "demo", ["patient"])
    other_patient = await user_session(mesh, "demo", other_patient_user["username"], other_patient_user["password"])
    auditor_user = await make_user(mesh, "demo", ["auditor"], totp=True)
    auditor = await user_session(
        mesh, "demo", auditor_user["username"], auditor_user["password"], totp_now(auditor_user["enrolment"]["secret"]), scope="user/*.rs"
    )
    for name, actor in (("other patient", other_patient), ("tenant-admin", await admin_session(mesh)), ("auditor", auditor)):
        record(name, "own", "absent", await _endpoints(actor, patient_id, obs_id, key), False)

    # grantees: practitioners and clinic clients, own and other tenant, each consent state
    for tenant in ("demo", "other"):
        for state in CONSENT_STATES:
            practitioner_user = await make_user(mesh, tenant, ["practitioner"])
            practitioner = await user_session(
                mesh, tenant, practitioner_user["username"], practitioner_user["password"], scope="user/*.cruds"
            )
            await _set_consent(patient, patient_id, practitioner_user["id"], "user", state)
            label = "own" if tenant == "demo" else "other"
            record("practitioner", label, state, await _endpoints(practitioner, patient_id, obs_id, key), state == "present")
            client_id, private = await make_backend_client(mesh, tenant)
            clinic = await backend_session(mesh, client_id, private)
            await _set_consent(patient, patient_id, client_id, "client", state)
            record("clinic-client", label, state, await _endpoints(clinic, patient_id, obs_id, key), state == "present")

    # administration: only a tenant-admin signed in with a second factor
    admin = await admin_session(mesh)
    assert (await admin.request("GET", "/admin/users")).status_code == 200
    for name, actor in (("patient", patient), ("auditor", auditor)):
        if (await actor.request("GET", "/admin/users")).status_code < 400:
            unexpected.append(f"{name}: GET /admin/users allowed")
    assert not unexpected, "\n".join(unexpected)
