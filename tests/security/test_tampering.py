"""Invariant 2: any change to a stored ciphertext, its header or its associated
data is detected and refused with a clear error; nothing is returned half-decrypted."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.test_records import create_patient, observation
from tests.support import RunningMesh, new_patient_key

# Offsets inside a record blob (services/crypto/README.md): version, key id,
# wrapped data key, nonce, ciphertext, and from the end the tag and the commitment.
REGIONS = {"version": 0, "key-id": 2, "wrapped-dek": 30, "nonce": 70, "ciphertext": 100, "tag": -40, "commitment": -5}


def integrity_failures(mesh: RunningMesh) -> float:
    text = httpx.get(f"http://127.0.0.1:{mesh.layout.management_port('records')}/metrics").text
    return sum(float(v) for v in re.findall(r"^carevault_integrity_failures_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


async def _stored(mesh: RunningMesh, resource_id: str, version: int = 1) -> bytes:
    rows = await mesh.db_execute("records", "SELECT body FROM resource_versions WHERE id = $1 AND version_id = $2", resource_id, version)
    return bytes(rows[0][0])  # type: ignore[arg-type]


async def _store(mesh: RunningMesh, resource_id: str, body: bytes, version: int = 1) -> None:
    await mesh.db_execute("records", "UPDATE resource_versions SET body = $1 WHERE id = $2 AND version_id = $3", body, resource_id, version)


def assert_integrity_failure(resp: httpx.Response, secret_fragment: str) -> None:
    assert resp.status_code == 500
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "integrity-failure"
    assert secret_fragment not in resp.text


@pytest.fixture
async def stored_observation(mesh: RunningMesh) -> tuple[str, str, str, str]:
    async with mesh.fhir() as fhir:
        key = new_patient_key()
        patient_id = await create_patient(fhir, key)
        obs = (await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})).json()
    return key, patient_id, obs["id"], obs["code"]["text"]


@pytest.mark.parametrize("region", sorted(REGIONS))
async def test_a_flipped_byte_anywhere_is_an_integrity_failure(
    mesh: RunningMesh, stored_observation: tuple[str, str, str, str], region: str
) -> None:
    key, _, obs_id, content = stored_observation
    original = await _stored(mesh, obs_id)
    position = REGIONS[region] % len(original)
    tampered = bytearray(original)
    tampered[position] ^= 0x01
    await _store(mesh, obs_id, bytes(tampered))
    failures_before = integrity_failures(mesh)
    async with mesh.fhir() as fhir:
        resp = await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": key})
    assert_integrity_failure(resp, content)
    assert integrity_failures(mesh) == failures_before + 1
    assert "integrity failure" in mesh.logs("records")
    await _store(mesh, obs_id, original)
    async with mesh.fhir() as fhir:
        assert (await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": key})).status_code == 200


async def test_a_blob_moved_to_another_record_of_the_same_patient_is_refused(
    mesh: RunningMesh, stored_observation: tuple[str, str, str, str]
) -> None:
    key, patient_id, obs_id, content = stored_observation
    async with mesh.fhir() as fhir:
        other = (await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})).json()
        await _store(mesh, other["id"], await _stored(mesh, obs_id))
        assert_integrity_failure(await fhir.get(f"/Observation/{other['id']}", headers={"x-patient-key": key}), content)


async def test_a_blob_moved_to_another_version_is_refused(mesh: RunningMesh, stored_observation: tuple[str, str, str, str]) -> None:
    key, _, obs_id, content = stored_observation
    async with mesh.fhir() as fhir:
        current = (await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": key})).json()
        await fhir.put(f"/Observation/{obs_id}", json={**current, "status": "amended"}, headers={"x-patient-key": key})
        await _store(mesh, obs_id, await _stored(mesh, obs_id, 1), version=2)
        assert_integrity_failure(await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": key}), content)


async def test_a_blob_moved_to_another_patient_is_refused(mesh: RunningMesh, stored_observation: tuple[str, str, str, str]) -> None:
    _, _, obs_id, content = stored_observation
    async with mesh.fhir() as fhir:
        other_key = new_patient_key()
        other_patient = await create_patient(fhir, other_key)
        other = (await fhir.post("/Observation", json=observation(other_patient), headers={"x-patient-key": other_key})).json()
        await _store(mesh, other["id"], await _stored(mesh, obs_id))
        assert_integrity_failure(await fhir.get(f"/Observation/{other['id']}", headers={"x-patient-key": other_key}), content)


async def test_a_tampered_wrapped_patient_keyring_is_an_integrity_failure(
    mesh: RunningMesh, stored_observation: tuple[str, str, str, str]
) -> None:
    key, patient_id, obs_id, content = stored_observation
    rows = await mesh.db_execute("records", "SELECT wrapped_keyring FROM patients WHERE id = $1", patient_id)
    original = bytes(rows[0][0])  # type: ignore[arg-type]
    tampered = bytearray(original)
    tampered[40] ^= 0x80
    await mesh.db_execute("records", "UPDATE patients SET wrapped_keyring = $1 WHERE id = $2", bytes(tampered), patient_id)
    try:
        async with mesh.fhir() as fhir:
            assert_integrity_failure(await fhir.get(f"/Observation/{obs_id}", headers={"x-patient-key": key}), content)
    finally:
        await mesh.db_execute("records", "UPDATE patients SET wrapped_keyring = $1 WHERE id = $2", original, patient_id)
