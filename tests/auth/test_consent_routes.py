"""Consent is api's own type: api stores and enforces it, records holds none.

A Consent (or AuditEvent) inside a transaction or batch Bundle used to be relayed to
records and stored there as encrypted patient data: it looked like a consent, but api
never read it, so it granted nothing. Such entries are refused now (a transaction
whole, a batch that entry), naming the entry and the route to use. And the Location a
Consent create answers with (``Consent/{id}/_history/{vid}``) is served by api."""

from __future__ import annotations

from typing import Any

from tests.auth.support import Session, backend_session, make_backend_client
from tests.auth.test_sign_in import consent_body, patient_with_record
from tests.e2e.test_records import observation
from tests.support import RunningMesh


def _outcome_text(outcome: dict[str, Any]) -> str:
    return " ".join(i.get("diagnostics", "") for i in outcome["issue"])


async def _observations(session: Session, patient_id: str, key: str) -> int:
    found = await session.request("GET", f"/fhir/Observation?patient={patient_id}", headers={"x-patient-key": key})
    assert found.status_code == 200, found.text
    return len(found.json().get("entry", []))


async def test_a_consent_or_audit_event_in_a_bundle_is_refused_and_stores_nothing(mesh: RunningMesh) -> None:
    patient, patient_id, key, _obs = await patient_with_record(mesh)
    client_id, private = await make_backend_client(mesh, "demo")
    # A valid R4 Consent (scope and category too, which api's own route does not need):
    # records would accept it, were it not api's type.
    granted = consent_body(patient_id, client_id)
    granted["provision"]["actor"][0]["role"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]
    }
    consent = {
        **granted,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
    }
    audit_event = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "recorded": "2026-01-02T10:00:00Z",
        "agent": [{"requestor": True, "who": {"display": "forged"}}],
        "source": {"observer": {"display": "forged"}},
    }
    headers = {"x-patient-key": key, "content-type": "application/fhir+json"}

    # A transaction fails whole: the Observation before the Consent is not stored either.
    entries = [
        {"resource": observation(patient_id), "request": {"method": "POST", "url": "Observation"}},
        {"resource": consent, "request": {"method": "POST", "url": "Consent"}},
    ]
    transaction = await patient.request(
        "POST", "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, headers=headers
    )
    assert transaction.status_code == 422, transaction.text
    issue = transaction.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["Bundle.entry[1].request.url"]
    assert "Bundle.entry[1]" in issue["diagnostics"] and "POST /fhir/Consent" in issue["diagnostics"]
    assert await _observations(patient, patient_id, key) == 1

    # A batch fails those entries only, whatever their method.
    entries = [
        {"resource": consent, "request": {"method": "POST", "url": "Consent"}},
        {"resource": observation(patient_id), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {**consent, "id": "c1"}, "request": {"method": "PUT", "url": "Consent/c1"}},
        {"resource": audit_event, "request": {"method": "POST", "url": "AuditEvent"}},
        {"request": {"method": "GET", "url": f"Consent?patient={patient_id}"}},
    ]
    batch = await patient.request("POST", "/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=headers)
    assert batch.status_code == 200, batch.text
    answers = [e["response"] for e in batch.json()["entry"]]
    assert [a["status"].split()[0] for a in answers] == ["422", "201", "422", "422", "422"]
    assert "Bundle.entry[0]" in _outcome_text(answers[0]["outcome"]) and "POST /fhir/Consent" in _outcome_text(answers[0]["outcome"])
    assert "AuditEvent is written by the server only" in _outcome_text(answers[3]["outcome"])
    assert await _observations(patient, patient_id, key) == 2

    # Nothing was granted: api knows of no consent, and the clinic is still refused.
    listed = await patient.request("GET", f"/fhir/Consent?patient={patient_id}")
    assert listed.status_code == 200 and listed.json()["total"] == 0, listed.text
    clinic = await backend_session(mesh, client_id, private)
    refused = await clinic.request("GET", f"/fhir/Observation?patient={patient_id}", headers={"x-patient-key": key})
    assert refused.status_code == 403, refused.text


async def test_the_location_of_a_new_consent_is_served_and_older_versions_are_said_gone(mesh: RunningMesh) -> None:
    patient, patient_id, _key, _obs = await patient_with_record(mesh)
    client_id, private = await make_backend_client(mesh, "demo")
    granted = await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, client_id))
    assert granted.status_code == 201, granted.text
    consent_id = granted.json()["id"]
    location = granted.headers["location"]
    assert location == f"Consent/{consent_id}/_history/1"

    at_location = await patient.request("GET", f"/fhir/{location}")
    assert at_location.status_code == 200, at_location.text
    assert at_location.json() == granted.json()
    clinic = await backend_session(mesh, client_id, private)  # the grantee sees the consent naming it
    assert (await clinic.request("GET", f"/fhir/{location}")).json()["id"] == consent_id
    assert (await patient.request("GET", f"/fhir/Consent/{consent_id}/_history/2")).status_code == 404

    revoked = await patient.request("DELETE", f"/fhir/Consent/{consent_id}")
    assert revoked.status_code == 204, revoked.text
    current = await patient.request("GET", f"/fhir/Consent/{consent_id}/_history/2")
    assert current.status_code == 200 and current.json()["status"] == "inactive", current.text
    older = await patient.request("GET", f"/fhir/{location}")
    assert older.status_code == 404, older.text
    assert f"Consent/{consent_id}/_history/2" in _outcome_text(older.json())

    # No history is kept: the answer says where Consent is served instead of searching records.
    history = await patient.request("GET", f"/fhir/Consent/{consent_id}/_history")
    assert history.status_code == 404, history.text
    assert "Consent is served by api" in _outcome_text(history.json())
