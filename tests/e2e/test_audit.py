"""Invariant 5 through the whole mesh: every health-data endpoint leaves exactly the
audit events docs/audit.md documents; the trail reads as FHIR AuditEvent for an
auditor and for the patient holding their key; a request whose event cannot be
stored fails and relays nothing."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.audit_support import create_patient, events_since, last_seq, observation, pseudonym, verify
from tests.support import RunningMesh, canary, new_patient_key


async def test_every_health_data_endpoint_leaves_exactly_the_documented_events(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    key = new_patient_key()
    h = {"x-patient-key": key}

    async def step(expected: list[tuple[Any, ...]], call: Any) -> httpx.Response:
        before = await last_seq(mesh)
        resp: httpx.Response = await call
        assert await events_since(mesh, before) == expected, resp.text[:300]
        return resp

    before = await last_seq(mesh)
    patient_id = await create_patient(fhir, key)
    p = pseudonym(mesh, patient_id)
    assert await events_since(mesh, before) == [
        ("fhir.create.attempt", None, "Patient", None, None),
        ("fhir.create", 201, "Patient", None, p),  # a Patient's id is the patient id: kept as its pseudonym only
    ]
    before = await last_seq(mesh)
    obs = (await fhir.post("/Observation", json=observation(patient_id), headers=h)).json()["id"]
    assert await events_since(mesh, before) == [
        ("fhir.create.attempt", None, "Observation", None, None),
        ("fhir.create", 201, "Observation", obs, p),
    ]
    read = await step([("fhir.read", 200, "Observation", obs, p)], fhir.get(f"/Observation/{obs}", headers=h))
    await step([("fhir.vread", 200, "Observation", obs, p)], fhir.get(f"/Observation/{obs}/_history/1", headers=h))
    await step([("fhir.history", 200, "Observation", obs, p)], fhir.get(f"/Observation/{obs}/_history", headers=h))
    await step(
        [("fhir.search", 200, "Observation", None, p)],
        fhir.get("/Observation", params={"patient": patient_id, "code": "http://loinc.org|8867-4"}, headers=h),
    )
    changed = {**read.json(), "status": "amended"}
    await step(
        [("fhir.update.attempt", None, "Observation", obs, None), ("fhir.update", 200, "Observation", obs, p)],
        fhir.put(f"/Observation/{obs}", json=changed, headers=h),
    )
    await step(
        [("fhir.delete.attempt", None, "Observation", obs, None), ("fhir.delete", 204, "Observation", obs, p)],
        fhir.delete(f"/Observation/{obs}", headers=h),
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "POST", "url": "Observation"}, "resource": observation(patient_id)}],
    }
    await step(
        [("fhir.bundle.attempt", None, None, None, None), ("fhir.bundle", 200, None, None, p)],
        fhir.post("", content=orjson.dumps(bundle), headers=h | {"content-type": "application/fhir+json"}),
    )
    batch = {"resourceType": "Bundle", "type": "batch", "entry": bundle["entry"]}
    await step(
        [("fhir.bundle.attempt", None, None, None, None), ("fhir.bundle", 200, None, None, p)],
        fhir.post("", content=orjson.dumps(batch), headers=h | {"content-type": "application/fhir+json"}),
    )
    await step([("fhir.export", 200, "Patient", None, p)], fhir.get(f"/Patient/{patient_id}/$everything", headers=h))
    # Binary content goes through api's own routes (fileservice), audited the same way.
    before = await last_seq(mesh)
    binary_headers = h | {"content-type": "text/plain", "x-security-context": f"Patient/{patient_id}"}
    binary = (await fhir.post("/Binary", content=b"scanned letter", headers=binary_headers)).json()["id"]
    assert await events_since(mesh, before) == [
        ("fhir.create.attempt", None, "Binary", None, None),
        ("fhir.create", 201, "Binary", binary, p),
    ]
    await step([("fhir.read", 200, "Binary", binary, p)], fhir.get(f"/Binary/{binary}", headers=h | {"accept": "text/plain"}))
    ranged = await step(
        [("fhir.read", 206, "Binary", binary, p)], fhir.get(f"/Binary/{binary}", headers=h | {"accept": "text/plain", "range": "bytes=0-6"})
    )
    assert ranged.content == b"scanned"
    await step([("fhir.vread", 200, "Binary", binary, p)], fhir.get(f"/Binary/{binary}/_history/1", headers=h | {"accept": "text/plain"}))
    await step(
        [("fhir.update.attempt", None, "Binary", binary, None), ("fhir.update", 200, "Binary", binary, p)],
        fhir.put(f"/Binary/{binary}", content=b"scanned letter, page 2", headers=binary_headers),
    )
    # A search without a patient (Binary: _id and _lastUpdated only) returns ids and meta, and names no patient.
    await step([("fhir.search", 200, "Binary", None, None)], fhir.get("/Binary", params={"_id": binary}))
    await step([("fhir.read", 403, "Binary", binary, p)], fhir.get(f"/Binary/{binary}", headers={"x-patient-key": new_patient_key()}))
    new_key = new_patient_key()
    rotate = {"resourceType": "Parameters", "parameter": [{"name": "newKey", "valueString": new_key}]}
    await step(
        [("fhir.rotate-key.attempt", None, "Patient", None, p), ("fhir.rotate-key", 200, "Patient", None, p)],
        fhir.post(f"/Patient/{patient_id}/$rotate-key", json=rotate, headers=h),
    )
    h = {"x-patient-key": new_key}
    # Refusals are accesses too: no key (401), a wrong key (403), an id that is no id (404).
    await step([("fhir.read", 401, "Patient", None, p)], fhir.get(f"/Patient/{patient_id}"))
    await step([("fhir.read", 403, "Patient", None, p)], fhir.get(f"/Patient/{patient_id}", headers={"x-patient-key": key}))
    await step([("fhir.read", 404, "Observation", None, None)], fhir.get("/Observation/not-an-id", headers=h))
    # The audit trail's own reads are audited; the public CapabilityStatement is not.
    await step([("audit.query", 200, None, None, p)], fhir.get("/AuditEvent", params={"patient": patient_id}, headers=h))
    listed = await step([("audit.query", 200, None, None, None)], fhir.get("/AuditEvent", params={"_count": "1"}))
    event_id = listed.json()["entry"][0]["resource"]["id"]
    await step([("audit.query", 200, None, None, None)], fhir.get(f"/AuditEvent/{event_id}"))
    await step([], fhir.get("/metadata"))
    # Directory data (no patient) is audited the same way, without a patient.
    before = await last_seq(mesh)
    org = (await fhir.post("/Organization", json={"resourceType": "Organization", "name": "Clinic"})).json()["id"]
    assert await events_since(mesh, before) == [
        ("fhir.create.attempt", None, "Organization", None, None),
        ("fhir.create", 201, "Organization", org, None),
    ]
    await step([("fhir.read", 200, "Organization", org, None)], fhir.get(f"/Organization/{org}"))
    await step([("fhir.search", 200, "Organization", None, None)], fhir.get("/Organization", params={"identifier": "urn:x|1"}))
    # Erasure last: the patient is gone afterwards.
    await step(
        [("fhir.erase.attempt", None, "Patient", None, p), ("fhir.erase", 200, "Patient", None, p)],
        fhir.post(f"/Patient/{patient_id}/$erase", headers=h),
    )
    await step([("fhir.read", 410, "Patient", None, p)], fhir.get(f"/Patient/{patient_id}", headers=h))
    assert verify(mesh)["ok"]


async def test_auditors_and_patients_read_the_trail_as_fhir_audit_events(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    key, other_key = new_patient_key(), new_patient_key()
    patient_id = await create_patient(fhir, key)
    other_id = await create_patient(fhir, other_key)
    obs = (await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})).json()["id"]
    await fhir.get(f"/Observation/{obs}", headers={"x-patient-key": key, "x-purpose-of-use": "TREAT"})
    await fhir.get(f"/Patient/{other_id}", headers={"x-patient-key": other_key})

    # The patient's view: their events only, their own reference, who and why.
    mine = await fhir.get("/AuditEvent", params={"patient": patient_id}, headers={"x-patient-key": key})
    assert mine.status_code == 200, mine.text
    resources = [e["resource"] for e in mine.json()["entry"]]
    assert resources and all(r["resourceType"] == "AuditEvent" for r in resources)
    assert all({"reference": f"Patient/{patient_id}"} in [x["what"] for x in r.get("entity", [])] for r in resources)
    read = next(r for r in resources if r["subtype"][-1]["code"] == "fhir.read")
    assert read["agent"][0]["who"]["identifier"]["value"] == "dev-user"
    assert read["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert {"reference": f"Observation/{obs}"} in [x["what"] for x in read["entity"]]
    assert read["outcome"] == "0" and read["action"] == "R"
    assert not any(other_id in orjson.dumps(r).decode() for r in resources)

    # Someone else's key, or none that opens this patient: refused, and that refusal is audited.
    before = await last_seq(mesh)
    refused = await fhir.get("/AuditEvent", params={"patient": patient_id}, headers={"x-patient-key": other_key})
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "wrong-patient-key"
    assert await events_since(mesh, before) == [("audit.query", 403, None, None, pseudonym(mesh, patient_id))]
    assert (await fhir.get("/AuditEvent", params={"patient": patient_id, "agent": "x"}, headers={"x-patient-key": key})).status_code == 400

    # The auditor's view (the dev principal is its tenant's auditor in dev): filters and paging.
    page = await fhir.get("/AuditEvent", params={"subtype": "fhir.read", "_count": "1"})
    assert page.status_code == 200
    body = page.json()
    assert len(body["entry"]) == 1 and body["entry"][0]["resource"]["subtype"][-1]["code"] == "fhir.read"
    next_url = next(link["url"] for link in body["link"] if link["relation"] == "next")
    assert "_cursor=" in next_url
    by_entity = await fhir.get("/AuditEvent", params={"entity": f"Observation/{obs}"})
    assert {e["resource"]["subtype"][-1]["code"] for e in by_entity.json()["entry"]} >= {"fhir.create", "fhir.read"}
    one = by_entity.json()["entry"][0]["resource"]
    single = await fhir.get(f"/AuditEvent/{one['id']}")
    assert single.status_code == 200 and single.json()["id"] == one["id"]
    # An auditor sees a pseudonym, never a patient id it did not search by.
    assert patient_id not in by_entity.text
    assert (await fhir.get("/AuditEvent", params={"name": "x"})).status_code == 400


async def _rename(mesh: RunningMesh, old: str, new: str) -> None:
    await mesh.db_execute("api", f"ALTER TABLE {old} RENAME TO {new}")


async def test_a_request_whose_event_cannot_be_stored_fails_and_relays_nothing(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    secret = canary("failclosed")
    created = await fhir.post("/Observation", json={**observation(patient_id), "code": {"text": secret}}, headers={"x-patient-key": key})
    obs = created.json()["id"]
    count = "SELECT count(*) FROM resources WHERE patient_id = $1"
    rows_before = await mesh.db_execute("records", count, patient_id)
    await _rename(mesh, "audit_events", "audit_events_away")
    try:
        read = await fhir.get(f"/Observation/{obs}", headers={"x-patient-key": key})
        assert read.status_code == 503
        assert read.json()["issue"][0]["details"]["coding"][0]["code"] == "audit-unavailable"
        assert secret not in read.text  # records answered, but nothing of it was relayed
        write = await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})
        assert write.status_code == 503
        assert await mesh.db_execute("records", count, patient_id) == rows_before  # records was never asked
    finally:
        await _rename(mesh, "audit_events_away", "audit_events")
    again = await fhir.get(f"/Observation/{obs}", headers={"x-patient-key": key})
    assert again.status_code == 200 and secret in again.text
    assert verify(mesh)["ok"]
