"""Transaction Bundles posted at once that resolve the same conditional searches
(issue 8, ingest): a conditional create (``ifNoneExist``) and a placeholder for a
conditional reference are "search, create if nothing matched"; run side by side,
each Bundle used to see nothing and create its own copy, after which every later
reference to that identifier failed with 412 (more than one match). Exactly one
resource must come out, and every Bundle must point at it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson

from tests.support import new_patient_key

NPI = "http://hl7.org/fhir/sid/us-npi"
SYNTHEA = "https://github.com/synthetichealth/synthea"
BUNDLES = 6
# Enough entries that each Bundle spends a while between its search and its commit,
# as a Synthea bundle does: the window in which the other Bundles search too.
OBSERVATIONS = 80


def patient_bundle(npi: str, organization_id: str) -> dict[str, Any]:
    patient_url, org_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    organization = {"resourceType": "Organization", "name": "Clinic", "identifier": [{"system": SYNTHEA, "value": organization_id}]}
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {"resourceType": "Patient", "birthDate": "1990-01-02"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": org_url,
            "resource": organization,
            "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={SYNTHEA}|{organization_id}"},
        },
    ]
    for i in range(OBSERVATIONS):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": patient_url},
            "effectiveDateTime": f"2024-03-{1 + i % 28:02d}T10:00:00Z",
            "performer": [{"reference": f"Practitioner?identifier={NPI}|{npi}"}, {"reference": org_url}],
            "valueQuantity": {"value": 60 + i, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        }
        entries.append(
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": observation, "request": {"method": "POST", "url": "Observation"}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def matches(fhir: httpx.AsyncClient, resource_type: str, identifier: str) -> list[str]:
    found = await fhir.get(f"/{resource_type}", params={"identifier": identifier})
    assert found.status_code == 200, found.text
    return [e["resource"]["id"] for e in found.json().get("entry", [])]


async def test_concurrent_bundles_create_one_placeholder_and_one_conditional_create(fhir: httpx.AsyncClient) -> None:
    npi, organization_id = str(uuid.uuid4().int)[:10], str(uuid.uuid4())

    async def post(bundle: dict[str, Any], key: str) -> httpx.Response:
        headers = {"content-type": "application/fhir+json", "x-patient-key": key}
        return await fhir.post("", content=orjson.dumps(bundle), headers=headers, params={"placeholders": "true"})

    keys = [new_patient_key() for _ in range(BUNDLES)]
    answers = await asyncio.gather(*(post(patient_bundle(npi, organization_id), key) for key in keys))
    assert [a.status_code for a in answers] == [200] * BUNDLES, [a.text[:300] for a in answers if a.status_code != 200]

    practitioners = await matches(fhir, "Practitioner", f"{NPI}|{npi}")
    organizations = await matches(fhir, "Organization", f"{SYNTHEA}|{organization_id}")
    assert len(practitioners) == 1, practitioners
    assert len(organizations) == 1, organizations

    # Every Bundle's observations name that one Practitioner and that one Organization.
    for answer, key in zip(answers, keys, strict=True):
        location = next(e["response"]["location"] for e in answer.json()["entry"] if e["response"]["location"].startswith("Observation/"))
        read = await fhir.get("/" + location.split("/_history")[0], headers={"x-patient-key": key})
        assert read.status_code == 200, read.text
        assert [p["reference"] for p in read.json()["performer"]] == [
            f"Practitioner/{practitioners[0]}",
            f"Organization/{organizations[0]}",
        ]
    # One match each: nothing ambiguous is left for the next Bundle.
    again = await post(patient_bundle(npi, organization_id), new_patient_key())
    assert again.status_code == 200, again.text
