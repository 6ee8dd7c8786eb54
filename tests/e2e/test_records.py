"""Patient records through the whole mesh: FHIR CRUD, key checks, search, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.support import RunningMesh, canary, new_patient_key


def observation(patient_id: str, code: str = "8867-4", value: float = 72.0, when: str = "2024-03-05T10:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Heart rate"}], "text": canary("obs")},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


async def create_patient(fhir: httpx.AsyncClient, key: str) -> str:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": canary("family"), "given": [canary("given")]}],
        "telecom": [{"system": "phone", "value": "+33 6 12 34 56 78"}],
        "birthDate": "1980-04-02",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": canary("nir")}],
    }
    resp = await fhir.post("/Patient", json=patient, headers={"x-patient-key": key})
    assert resp.status_code == 201, resp.text
    patient_id: str = resp.json()["id"]
    return patient_id


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


async def test_create_read_update_delete_with_history(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    sent = observation(patient_id)
    created = await fhir.post("/Observation", json=sent, headers={"x-patient-key": key})
    assert created.status_code == 201, created.text
    obs = created.json()
    # A 2xx means committed: the row is there the moment the answer arrives.
    assert await mesh.db_execute("records", "SELECT version_id FROM resource_versions WHERE id = $1", obs["id"]) == [(1,)]
    assert created.headers["location"] == f"Observation/{obs['id']}/_history/1"
    assert created.headers["etag"] == 'W/"1"'

    read = await fhir.get(f"/Observation/{obs['id']}", headers={"x-patient-key": key})
    assert read.status_code == 200
    assert without_server_fields(read.json()) == sent
    assert read.json()["meta"]["versionId"] == "1"

    changed = {**read.json(), "status": "amended"}
    stale = await fhir.put(f"/Observation/{obs['id']}", json=changed, headers={"x-patient-key": key, "if-match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    updated = await fhir.put(f"/Observation/{obs['id']}", json=changed, headers={"x-patient-key": key, "if-match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"

    first = await fhir.get(f"/Observation/{obs['id']}/_history/1", headers={"x-patient-key": key})
    assert first.json()["status"] == "final"
    history = await fhir.get(f"/Observation/{obs['id']}/_history", headers={"x-patient-key": key})
    assert [e["response"]["etag"] for e in history.json()["entry"]] == ['W/"2"', 'W/"1"']

    deleted = await fhir.delete(f"/Observation/{obs['id']}", headers={"x-patient-key": key})
    assert deleted.status_code == 204
    gone = await fhir.get(f"/Observation/{obs['id']}", headers={"x-patient-key": key})
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"


async def test_history_pages_counts_and_filters(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    h = {"x-patient-key": key}
    patient_id = await create_patient(fhir, key)
    created = (await fhir.post("/Observation", json=observation(patient_id), headers=h)).json()
    path = f"/Observation/{created['id']}"
    stamps = [created["meta"]["lastUpdated"]]
    for value in (1.0, 2.0, 3.0, 4.0):
        current = (await fhir.get(path, headers=h)).json()
        updated = await fhir.put(path, json={**current, "valueQuantity": {"value": value}}, headers=h)
        stamps.append(updated.json()["meta"]["lastUpdated"])

    # Pages of _count, newest first, with the true total and a next link until the first version.
    seen, url = [], f"{path}/_history?_count=2"
    while url:
        page = await fhir.get(url, headers=h)
        assert page.status_code == 200, page.text
        assert page.json()["total"] == 5
        seen.append([e["response"]["etag"] for e in page.json()["entry"]])
        following = [link["url"] for link in page.json()["link"] if link["relation"] == "next"]
        url = following[0].split("/fhir", 1)[1] if following else ""
    assert seen == [['W/"5"', 'W/"4"'], ['W/"3"', 'W/"2"'], ['W/"1"']]

    # _since: the versions written at or after that instant.
    since = await fhir.get(f"{path}/_history", params={"_since": stamps[3]}, headers=h)
    assert [e["response"]["etag"] for e in since.json()["entry"]] == ['W/"5"', 'W/"4"'] and since.json()["total"] == 2
    # What history does not support, or a malformed value, is a 400, not ignored.
    for params in ({"_at": "2024"}, {"_count": "many"}, {"_since": "zz"}):
        refused = await fhir.get(f"{path}/_history", params=params, headers=h)
        assert refused.status_code == 400, (params, refused.text)
    lenient = await fhir.get(f"{path}/_history", params={"_at": "2024"}, headers=h | {"prefer": "handling=lenient"})
    assert lenient.status_code == 200 and lenient.json()["total"] == 5


async def test_numbers_out_of_range_or_outside_ascii_are_refused_never_a_500(fhir: httpx.AsyncClient) -> None:
    """str.isdigit() takes "²" and other digits int() refuses, and Python ints outgrow
    the database's: each was a 500 once."""
    key = new_patient_key()
    h = {"x-patient-key": key}
    patient_id = await create_patient(fhir, key)
    for version in ("99999999999999999999", "2147483648", "%C2%B2", "0"):
        resp = await fhir.get(f"/Patient/{patient_id}/_history/{version}", headers=h)
        assert resp.status_code == 404, (version, resp.text)
    superscript_two = "\u00b2"
    assert (await fhir.get("/Observation", params={"patient": patient_id, "_count": superscript_two}, headers=h)).status_code == 400
    etag = f'W/"{superscript_two}"'.encode("latin-1")
    stale = await fhir.put(f"/Patient/{patient_id}", json={"resourceType": "Patient", "id": patient_id}, headers=h | {"if-match": etag})
    assert stale.status_code == 400, stale.text
    assert (await fhir.get("/AuditEvent", params={"_cursor": "9" * 30})).status_code == 400
    assert (await fhir.get("/AuditEvent", params={"_count": superscript_two})).status_code == 400
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{patient_id}/_history/99999999999"}}],
    }
    answered = await fhir.post("", json=batch, headers=h)
    assert answered.status_code == 200 and answered.json()["entry"][0]["response"]["status"].startswith("404")


async def test_updates_of_one_version_sent_at_once_one_wins_the_rest_get_412(fhir: httpx.AsyncClient) -> None:
    """Eight clients update the same version at once: one new version, seven 412s, no
    5xx. On SQLite the losers once read the version outside the write's transaction
    and broke its primary key (500)."""
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    created = await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    obs_id = created.json()["id"]
    for _ in range(3):
        current = (await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": key})).json()
        etag = f'W/"{current["meta"]["versionId"]}"'

        async def update(value: int, current: dict[str, Any] = current, etag: str = etag) -> httpx.Response:
            changed = {**current, "valueQuantity": {**current["valueQuantity"], "value": value}}
            return await fhir.put(f"/Observation/{obs_id}", json=changed, headers={"x-patient-key": key, "if-match": etag})

        answers = await asyncio.gather(*(update(value) for value in range(8)))
        assert sorted(a.status_code for a in answers) == [200] + [412] * 7, [a.text[:200] for a in answers if a.status_code >= 500]
    history = await fhir.get(f"/Observation/{obs_id}/_history", headers={"x-patient-key": key})
    assert [e["response"]["etag"] for e in history.json()["entry"]] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']


async def test_keys_are_checked_before_anything_is_decrypted(fhir: httpx.AsyncClient) -> None:
    key, other_key = new_patient_key(), new_patient_key()
    patient_id = await create_patient(fhir, key)
    await create_patient(fhir, other_key)
    created = await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    obs_id = created.json()["id"]

    missing = await fhir.get(f"/Observation/{obs_id}")
    assert missing.status_code == 401
    assert missing.json()["issue"][0]["details"]["coding"][0]["code"] == "patient-key-required"
    for wrong in (new_patient_key(), other_key):
        refused = await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": wrong})
        assert refused.status_code == 403
        assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "wrong-patient-key"
        assert "Observation" not in refused.text.replace("OperationOutcome", "")
    malformed = await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": "not-a-key"})
    assert malformed.status_code == 400
    # Writing into a patient's records needs that patient's key too.
    foreign = await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": other_key})
    assert foreign.status_code == 403


async def test_invalid_resources_get_an_operation_outcome_and_write_nothing(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    bad = observation(patient_id)
    bad["status"] = 12
    resp = await fhir.post("/Observation", json=bad, headers={"x-patient-key": key})
    assert resp.status_code in (400, 422)
    assert resp.json()["resourceType"] == "OperationOutcome"
    not_json = await fhir.post("/Observation", content=b"{", headers={"x-patient-key": key, "content-type": "application/fhir+json"})
    assert not_json.status_code == 400
    listing = await fhir.get("/Observation", params={"patient": patient_id}, headers={"x-patient-key": key})
    assert listing.json()["entry"] == []


async def test_search_by_token_date_and_paging(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    for i in range(5):
        resp = await fhir.post(
            "/Observation", json=observation(patient_id, code="8867-4", when=f"2024-03-0{i + 1}T10:00:00Z"), headers={"x-patient-key": key}
        )
        assert resp.status_code == 201
    await fhir.post("/Observation", json=observation(patient_id, code="29463-7"), headers={"x-patient-key": key})
    headers = {"x-patient-key": key}

    by_code = await fhir.get("/Observation", params={"patient": patient_id, "code": "http://loinc.org|8867-4"}, headers=headers)
    assert by_code.status_code == 200, by_code.text
    assert len(by_code.json()["entry"]) == 5
    by_bare_code = await fhir.get("/Observation", params={"subject": f"Patient/{patient_id}", "code": "29463-7"}, headers=headers)
    assert len(by_bare_code.json()["entry"]) == 1
    by_day = await fhir.get("/Observation", params={"patient": patient_id, "date": "2024-03-02"}, headers=headers)
    assert len(by_day.json()["entry"]) == 1
    by_month = await fhir.get("/Observation", params={"patient": patient_id, "date": "2024-03"}, headers=headers)
    assert len(by_month.json()["entry"]) == 6

    seen: list[str] = []
    page = await fhir.get("/Observation", params={"patient": patient_id, "_count": "2", "_sort": "_lastUpdated"}, headers=headers)
    while True:
        body = page.json()
        seen += [e["resource"]["id"] for e in body["entry"]]
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = await fhir.get(nxt[0], headers=headers)
    assert len(seen) == len(set(seen)) == 6

    unknown = await fhir.get("/Observation", params={"patient": patient_id, "shoe-size": "42"}, headers=headers)
    assert unknown.status_code == 400


async def test_search_without_key_returns_metadata_only(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    listing = await fhir.get("/Observation", params={"_count": "200"})
    assert listing.status_code == 200, listing.text
    for entry in listing.json()["entry"]:
        assert set(entry["resource"]) == {"resourceType", "id", "meta"}
    needs_key = await fhir.get("/Observation", params={"patient": patient_id})
    assert needs_key.status_code == 401


async def test_idempotency_key_applies_a_write_once(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    body = observation(patient_id)
    headers = {"x-patient-key": key, "idempotency-key": str(uuid.uuid4())}
    first = await fhir.post("/Observation", json=body, headers=headers)
    again = await fhir.post("/Observation", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert first.headers["location"] == again.headers["location"]
    other = await fhir.post("/Observation", json=observation(patient_id, value=99), headers=headers)
    assert other.status_code == 422
    listing = await fhir.get("/Observation", params={"patient": patient_id}, headers={"x-patient-key": key})
    assert len(listing.json()["entry"]) == 1


async def test_key_rotation_rewraps_and_refuses_the_old_key(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    old, new = new_patient_key(), new_patient_key()
    patient_id = await create_patient(fhir, old)
    obs = (await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": old})).json()
    before = await mesh.db_execute("records", "SELECT body FROM resource_versions WHERE id = $1", obs["id"])
    params = {"resourceType": "Parameters", "parameter": [{"name": "newKey", "valueString": new}]}
    rotated = await fhir.post(f"/Patient/{patient_id}/$rotate-key", json=params, headers={"x-patient-key": old})
    assert rotated.status_code == 200, rotated.text
    assert (await fhir.get(f"/Observation/{obs['id']}", headers={"x-patient-key": old})).status_code == 403
    read = await fhir.get(f"/Observation/{obs['id']}", headers={"x-patient-key": new})
    assert read.status_code == 200
    assert read.json()["valueQuantity"] == obs["valueQuantity"]
    after = await mesh.db_execute("records", "SELECT body FROM resource_versions WHERE id = $1", obs["id"])
    assert before == after  # bodies were not re-encrypted


async def test_patient_create_fails_whole_when_keyservice_is_down(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    before = await mesh.db_execute("records", "SELECT count(*) FROM patients")
    mesh.mesh.stop_one("keyservice")
    try:
        resp = await fhir.post(
            "/Patient", json={"resourceType": "Patient", "gender": "female"}, headers={"x-patient-key": new_patient_key()}
        )
        assert resp.status_code == 503
        assert resp.json()["resourceType"] == "OperationOutcome"
        assert await mesh.db_execute("records", "SELECT count(*) FROM patients") == before
    finally:
        mesh.mesh.start_one("keyservice")
        mesh.mesh.wait_ready(services=("keyservice", "records", "api", "gateway"))


async def test_capability_statement_is_public_and_lists_what_is_supported(mesh: RunningMesh) -> None:
    async with mesh.client() as client:
        resp = await client.get("/fhir/metadata")
    assert resp.status_code == 200
    statement = resp.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "Observation" in types
    assert {i["code"] for i in types["Observation"]["interaction"]} >= {
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "create",
        "search-type",
    }
    assert "Binary" in types
    assert "X-Security-Context" in types["Binary"]["documentation"]


async def test_a_client_that_accepts_no_fhir_json_gets_406(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    """This server speaks FHIR JSON only; a client asking for XML (Accept or _format)
    is told so, not answered in JSON it did not ask for."""
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    created = await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    path = f"/Observation/{created.json()['id']}"
    refused = [
        await fhir.get(path, headers={"x-patient-key": key, "accept": "application/fhir+xml"}),
        await fhir.get(path, params={"_format": "xml"}, headers={"x-patient-key": key}),
        await fhir.get("/Observation", params={"patient": patient_id, "_format": "application/fhir+xml"}, headers={"x-patient-key": key}),
        await fhir.get("/AuditEvent", headers={"accept": "application/xml"}),
        await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key, "accept": "application/fhir+xml"}),
    ]
    async with mesh.client() as client:
        refused.append(await client.get("/fhir/metadata", params={"_format": "xml"}))
    for resp in refused:
        assert resp.status_code == 406, resp.text
        outcome = resp.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "not-supported"
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "not-acceptable"
    # The refused create wrote nothing.
    listing = await fhir.get("/Observation", params={"patient": patient_id}, headers={"x-patient-key": key})
    assert len(listing.json()["entry"]) == 1
    for accepted in ("application/fhir+json; fhirVersion=4.0", "application/json", "application/fhir+xml;q=0.9, */*;q=0.1"):
        resp = await fhir.get(path, headers={"x-patient-key": key, "accept": accepted})
        assert resp.status_code == 200, (accepted, resp.text)
    assert (
        await fhir.get(path, params={"_format": "json"}, headers={"x-patient-key": key, "accept": "application/xml"})
    ).status_code == 200


async def test_fhir_api_needs_authentication(mesh: RunningMesh) -> None:
    async with mesh.client() as client:
        resp = await client.get("/fhir/Observation")
    assert resp.status_code == 401
    assert resp.json()["resourceType"] == "OperationOutcome"


async def test_batch_entries_fail_alone_and_transactions_fail_whole(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    patient_id = await create_patient(fhir, key)
    missing = {**observation(patient_id), "id": "no-such-observation"}
    entries = [
        {"resource": observation(patient_id), "request": {"method": "POST", "url": "Observation"}},
        {"resource": missing, "request": {"method": "PUT", "url": "Observation/no-such-observation"}},  # 404 when applied
    ]
    headers = {"x-patient-key": key, "content-type": "application/fhir+json"}

    batch = await fhir.post("/", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=headers)
    assert batch.status_code == 200, batch.text
    statuses = [e["response"]["status"] for e in batch.json()["entry"]]
    assert statuses[0].startswith("201")
    assert not statuses[1].startswith("2")

    before = len((await fhir.get("/Observation", params={"patient": patient_id}, headers=headers)).json()["entry"])
    transaction = await fhir.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, headers=headers)
    assert 400 <= transaction.status_code < 500
    after = len((await fhir.get("/Observation", params={"patient": patient_id}, headers=headers)).json()["entry"])
    assert after == before == 1
