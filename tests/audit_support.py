"""What the audit, erasure and redaction tests share: reading the trail, running the
operator CLI against a test mesh, making a patient with some records."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import orjson

from carevault_crypto.pseudonym import PseudonymKey
from tests.support import RunningMesh, canary

EVENT_COLUMNS = "seq, event, outcome, resource_type, resource_id, patient"


async def last_seq(mesh: RunningMesh) -> int:
    rows = await mesh.db_execute("api", "SELECT seq FROM audit_chain_head WHERE id = 1")
    return int(rows[0][0])  # type: ignore[call-overload]


async def events_since(mesh: RunningMesh, seq: int) -> list[tuple[Any, ...]]:
    """(event, outcome, resource type, resource id, patient pseudonym) after ``seq``."""
    rows = await mesh.db_execute("api", f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq", seq)
    return [tuple(r[1:]) for r in rows]


def pseudonym(mesh: RunningMesh, patient_id: str, tenant: str = "dev") -> str:
    key = PseudonymKey.from_text((mesh.layout.audit_dir / "pseudonym.key").read_text(encoding="utf-8"))
    return key.pseudonym(tenant, patient_id)


def carevault(mesh: RunningMesh, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """The operator CLI, pointed at this mesh's state and databases."""
    layout = mesh.layout
    base = [sys.executable, "-m", "carevault_cli", "--state-dir", str(layout.state_dir), "--port-offset", str(layout.port_offset)]
    if layout.database_url_template:
        base += ["--database-url-template", layout.database_url_template]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, check=False, input=stdin.decode())


def verify(mesh: RunningMesh) -> dict[str, Any]:
    done = carevault(mesh, "audit", "verify", "--json", "--log-checkpoints", str(mesh.layout.log_file("api")))
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


def patient_resource() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": canary("family"), "given": [canary("given")]}],
        "birthDate": "1980-04-02",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": canary("nir")}],
    }


def observation(patient_id: str, code: str = "8867-4", value: float = 72.0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": canary("obs")},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-03-05T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


async def create_patient(fhir: httpx.AsyncClient, key: str) -> str:
    resp = await fhir.post("/Patient", json=patient_resource(), headers={"x-patient-key": key})
    assert resp.status_code == 201, resp.text
    patient_id: str = resp.json()["id"]
    return patient_id
