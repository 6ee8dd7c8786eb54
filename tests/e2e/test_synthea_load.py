"""Every Synthea bundle of the shared data loads through the running mesh, and every
resource reads back equal to what was sent (modulo ids, meta and rewritten references)."""

from __future__ import annotations

import orjson
import pytest

from tests.fhir_loader import comparable, directory_bundles, load_bundle, patient_bundles
from tests.support import RunningMesh, new_patient_key, shared_data_dir

pytestmark = pytest.mark.shared_data


async def test_synthea_bundles_load_and_read_back(mesh: RunningMesh) -> None:
    data = shared_data_dir()
    async with mesh.fhir(timeout=300) as fhir:
        for path in directory_bundles(data):
            loaded = await load_bundle(fhir, path, None)
            assert loaded.status == 200, (path.name, loaded.response)
        total = 0
        for path in patient_bundles(data):
            key = new_patient_key()
            loaded = await load_bundle(fhir, path, key)
            assert loaded.status == 200, (path.name, orjson.dumps(loaded.response)[:2000])
            created = [(sent, loc) for sent, loc in zip(loaded.sent, loaded.locations, strict=True) if loc]
            # Read everything back in one batch of reads, under the patient's key.
            reads = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": loc}} for _, loc in created]}
            resp = await fhir.post("", content=orjson.dumps(reads), headers={"x-patient-key": key, "content-type": "application/fhir+json"})
            assert resp.status_code == 200
            for (sent, location), entry in zip(created, resp.json()["entry"], strict=True):
                assert entry["response"]["status"].startswith("200"), (location, entry["response"])
                assert comparable(entry["resource"]) == comparable(sent), location
            total += len(created)
    assert total > 7_000  # the rest are directory copies that matched existing resources
