"""A FHIR client library nobody here wrote (fhirpy) works against the running mesh:
create, read, update, search and paging."""

from __future__ import annotations

from fhirpy import AsyncFHIRClient

from tests.e2e.test_records import observation
from tests.support import RunningMesh, canary, new_patient_key


def client(mesh: RunningMesh, key: str) -> AsyncFHIRClient:
    return AsyncFHIRClient(
        mesh.layout.gateway_url + "/fhir",
        authorization=f"Bearer {mesh.dev_token}",
        extra_headers={"X-Patient-Key": key, "Accept": "application/fhir+json"},
        aiohttp_config={"ssl": mesh.ssl_context()},
    )


async def test_fhirpy_create_read_update_search_and_page(mesh: RunningMesh) -> None:
    key = new_patient_key()
    fhir = client(mesh, key)
    patient = fhir.resource("Patient", name=[{"family": canary("fhirpy"), "given": ["Ada"]}], gender="female", birthDate="1990-01-31")
    await patient.save()
    assert patient.id

    fetched = await fhir.reference("Patient", patient.id).to_resource()
    assert fetched["gender"] == "female"
    fetched["birthDate"] = "1990-02-01"
    await fetched.save()
    again = await fhir.reference("Patient", patient.id).to_resource()
    assert again["birthDate"] == "1990-02-01"
    assert again["meta"]["versionId"] == "2"

    for i in range(5):
        await fhir.resource("Observation", **observation(patient.id, value=60 + i)).save()
    found = await fhir.resources("Observation").search(patient=patient.id, code="http://loinc.org|8867-4").fetch_all()
    assert len(found) == 5
    paged = await fhir.resources("Observation").search(patient=patient.id).limit(2).sort("_lastUpdated").fetch_all()
    assert sorted(o["valueQuantity"]["value"] for o in paged) == [60, 61, 62, 63, 64]
    first_page = await fhir.resources("Observation").search(patient=patient.id).limit(2).fetch()
    assert len(first_page) == 2
