"""Hosting-doctor keys rotate without losing any patient's escrow:
(a) a key added to keyservice gets each patient's key on its next use;
(b) the doctor's offline tool rewraps every package in bulk, and keyservice takes the upload.
Both suites are exercised: the development key is hybrid (ML-KEM-768 + X25519), the
added key classic (X25519)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from tests.e2e.test_break_glass import doctor, keyservice, open_request
from tests.e2e.test_records import create_patient, observation
from tests.support import RunningMesh, new_patient_key


def _keygen(tmp_path: Path, suite: str) -> tuple[Path, Path, str]:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    private = tmp_path / f"{suite}.key"
    made = doctor("keygen", "--out", str(private), "--suite", suite, "--passphrase-file", str(passphrase))
    assert made.returncode == 0, made.stderr
    public = Path(str(private) + ".pub")
    key_id = json.loads(public.read_text())["key_id"]
    return private, passphrase, key_id


async def _release(mesh: RunningMesh, patient_id: str) -> list[dict[str, Any]]:
    async with keyservice(mesh) as ks:
        request = await open_request(ks, patient_id)
        await ks.post(f"/break-glass/requests/{request['id']}/decision", json={"decided_by": "admin-2", "approve": True})
        released = await ks.post(f"/break-glass/requests/{request['id']}/release", json={"requester": "doctor-1"})
        packages: list[dict[str, Any]] = released.json()["packages"]
        return packages


def _open(tmp_path: Path, private: Path, passphrase: Path, package: dict[str, Any]) -> str:
    package_file = tmp_path / f"{package['patient_id']}-{package['doctor_key_id']}.json"
    package_file.write_text(json.dumps(package))
    out = tmp_path / f"{package['patient_id']}-{package['doctor_key_id']}.patient-key"
    opened = doctor("open", "--key", str(private), "--passphrase-file", str(passphrase), "--package", str(package_file), "--out", str(out))
    assert opened.returncode == 0, opened.stderr
    return out.read_text().strip()


async def test_added_doctor_key_gets_escrow_on_next_use_and_by_bulk_rewrap(mesh: RunningMesh, tmp_path: Path) -> None:
    key, other_key = new_patient_key(), new_patient_key()
    async with mesh.fhir() as fhir:
        patient_id = await create_patient(fhir, key)
        idle_patient = await create_patient(fhir, other_key)
        obs = (await fhir.post("/Observation", json=observation(patient_id), headers={"x-patient-key": key})).json()

    public_dir = mesh.state_dir / "doctor" / "public"
    private, passphrase, classic_id = _keygen(tmp_path, "classic")
    shutil.copy(Path(str(private) + ".pub"), public_dir / f"{classic_id}.pub")
    try:
        await asyncio.sleep(1.5)  # records' view of the keyset expires (1 s in the test mesh)
        # (a) on next use
        async with mesh.fhir() as fhir:
            assert (await fhir.get(f"/Observation/{obs['id']}", headers={"x-patient-key": key})).status_code == 200
        packages = {p["doctor_key_id"]: p for p in await _release(mesh, patient_id)}
        assert classic_id in packages
        assert _open(tmp_path, private, passphrase, packages[classic_id]) == key

        # (b) in bulk, for a patient whose key was not used since: export, rewrap offline, upload
        dev_private = mesh.state_dir / "doctor" / "DEV-ONLY-doctor.key"
        dev_passphrase = mesh.state_dir / "doctor" / "DEV-ONLY-doctor.passphrase"
        dev_id = next(public_dir.glob("dev-*.pub")).stem.removeprefix("dev-")
        async with keyservice(mesh) as ks:
            exported = (await ks.get("/break-glass/escrow-export", params={"doctor_key_id": dev_id})).json()["packages"]
            export_file = tmp_path / "export.jsonl"
            export_file.write_text("".join(json.dumps(p) + "\n" for p in exported))
            rewrapped = tmp_path / "rewrapped.jsonl"
            done = doctor(
                "re-escrow", "--old-key", str(dev_private), "--passphrase-file", str(dev_passphrase),
                "--new-public", str(Path(str(private) + ".pub")), "--in", str(export_file), "--out", str(rewrapped),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            upload = [json.loads(line) for line in rewrapped.read_text().splitlines()]
            result = await ks.post("/break-glass/escrow-uploads", json={"packages": upload})
            assert result.status_code == 200, result.text
            assert result.json()["added"] >= 1
            # A package claiming another patient than its sealed header is refused.
            forged = dict(upload[0], patient_id="someone-else")
            assert (await ks.post("/break-glass/escrow-uploads", json={"packages": [forged]})).status_code == 422
        idle = {p["doctor_key_id"]: p for p in await _release(mesh, idle_patient)}
        assert _open(tmp_path, private, passphrase, idle[classic_id]) == other_key
    finally:
        (public_dir / f"{classic_id}.pub").unlink()
