"""``Patient/[id]/$everything`` under a consent limited to some resource types
(issue 6 export, consents of the sign-in issue): the grantee gets those types of the
patient's records and no other, the token's scopes narrow it further, and a caller
whom consent and scopes leave no type is refused (403). The patient gets every type."""

from __future__ import annotations

from typing import Any

import httpx

from tests.auth.support import Session, backend_session, make_backend_client
from tests.auth.test_sign_in import consent_body, patient_with_record
from tests.support import RunningMesh


def condition(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient_id}"}, "code": {"text": "asthma"}}


async def exported_types(session: Session, patient_id: str, key: str) -> httpx.Response:
    return await session.request("GET", f"/fhir/Patient/{patient_id}/$everything", headers={"x-patient-key": key})


def types_in(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"] for e in response.json()["entry"] if e["search"]["mode"] == "match"}


async def test_everything_under_a_consent_limited_to_observations_exports_observations_only(mesh: RunningMesh) -> None:
    patient, patient_id, key, _obs = await patient_with_record(mesh)
    created = await patient.request("POST", "/fhir/Condition", json=condition(patient_id), headers={"x-patient-key": key})
    assert created.status_code == 201, created.text
    assert types_in(await exported_types(patient, patient_id, key)) == {"Patient", "Observation", "Condition"}

    client_id, private = await make_backend_client(mesh, "demo")
    clinic = await backend_session(mesh, client_id, private)
    assert (await exported_types(clinic, patient_id, key)).status_code == 403  # no consent yet

    granted = await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, client_id, types=["Observation"]))
    assert granted.status_code == 201, granted.text
    limited = await exported_types(clinic, patient_id, key)
    assert types_in(limited) == {"Observation"}
    assert "asthma" not in limited.text and limited.json()["total"] == 1
    # _type narrows what the consent allows, never widens it.
    asked = await clinic.request(
        "GET", f"/fhir/Patient/{patient_id}/$everything?_type=Condition,Observation", headers={"x-patient-key": key}
    )
    assert types_in(asked) == {"Observation"} and "asthma" not in asked.text

    # A second consent adds the Patient resource: the union, still not the Condition.
    more = await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, client_id, types=["Patient"]))
    assert more.status_code == 201, more.text
    assert types_in(await exported_types(clinic, patient_id, key)) == {"Patient", "Observation"}

    # Scopes narrow the consent: a token for Conditions only, a consent for Observations and Patient only: nothing left.
    narrow = await backend_session(mesh, client_id, private, scope="system/Condition.rs")
    refused = await exported_types(narrow, patient_id, key)
    assert refused.status_code == 403, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "access-denied"
