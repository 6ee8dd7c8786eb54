"""Invariant 1 for telemetry: canaries of every kind of personal data, pushed through
every endpoint and its error paths, never appear in any output of any service -
log files, error reports (a real sentry-sdk sending to a local collector) and spans
(OTLP/HTTP to the same collector)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.audit_support import carevault
from tests.support import CANARIES, RunningMesh, canary, new_patient_key, secret_forms


@dataclass
class Canaries:
    """One value per kind, unique to this run; all registered for the final scan of
    databases and state files too."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, value: str) -> str:
        self.values[kind] = value
        CANARIES.append(value)
        return value


def _digits(n: int) -> str:
    return "".join(random.choice("0123456789") for _ in range(n))


def make_canaries() -> Canaries:
    c = Canaries()
    c.add("family", canary("redfamily"))
    c.add("given", canary("redgiven"))
    c.add("phone-international", f"+33 6 {_digits(2)} {_digits(2)} {_digits(2)} {_digits(2)}")
    c.add("phone-local", f"06.{_digits(2)}.{_digits(2)}.{_digits(2)}.{_digits(2)}")
    c.add("phone-us", f"({_digits(3)}) {_digits(3)}-{_digits(4)}")
    c.add("email", f"marguerite.{uuid.uuid4().hex[:10]}@example.org")
    c.add("street", f"Canaristreet{uuid.uuid4().hex[:8]}")
    c.add("city", f"Canaricity{uuid.uuid4().hex[:8]}")
    c.add("nir", f"2 84 05 75 {_digits(3)} {_digits(3)} {_digits(2)}")
    c.add("mrn", canary("mrn"))
    c.add("free-text", canary("note"))
    c.add("bearer", secrets.token_urlsafe(32))
    return c


def patient_with(c: Canaries) -> dict[str, Any]:
    v = c.values
    return {
        "resourceType": "Patient",
        "name": [{"family": v["family"], "given": [v["given"]], "text": f"{v['given']} {v['family']}"}],
        "telecom": [
            {"system": "phone", "value": v["phone-international"]},
            {"system": "phone", "value": v["phone-local"]},
            {"system": "phone", "value": v["phone-us"]},
            {"system": "email", "value": v["email"]},
        ],
        "address": [{"line": [f"12 bis rue des {v['street']}"], "postalCode": "75011", "city": v["city"]}],
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": v["nir"]}, {"system": "urn:mrn", "value": v["mrn"]}],
        "birthDate": "1980-04-02",
    }


def observation_with(c: Canaries, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": c.values["free-text"]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "note": [{"text": f"{c.values['free-text']} call {c.values['phone-local']} or {c.values['email']}"}],
    }


async def push_everywhere(mesh: RunningMesh, c: Canaries, key: str) -> list[int]:
    """Every endpoint, its happy path and its error paths, with canaries in bodies,
    query strings, paths and headers. Returns the statuses seen."""
    v = c.values
    h = {"x-patient-key": key}
    seen: list[int] = []
    async with mesh.fhir() as fhir, mesh.client() as raw:

        async def call(method: str, url: str, client: httpx.AsyncClient = fhir, **kwargs: Any) -> httpx.Response:
            resp = await client.request(method, url, **kwargs)
            seen.append(resp.status_code)
            return resp

        patient = await call("POST", "/Patient", json=patient_with(c), headers=h)
        assert patient.status_code == 201, patient.text
        pid = patient.json()["id"]
        obs = await call("POST", "/Observation", json=observation_with(c, pid), headers=h)
        oid = obs.json()["id"]
        await call("PUT", f"/Observation/{oid}", json={**obs.json(), "status": "amended"}, headers=h)
        await call("GET", f"/Observation/{oid}", headers=h)
        await call("GET", f"/Observation/{oid}/_history", headers=h)
        await call("GET", f"/Observation/{oid}/_history/1", headers=h)
        await call("GET", f"/Patient/{pid}/$everything", headers=h)
        for params in (
            {"patient": pid, "code": v["free-text"]},
            {"family": v["family"], "telecom": v["phone-international"], "email": v["email"], "address-city": v["city"]},
            {"identifier": f"urn:mrn|{v['mrn']}", "patient": pid},
            {"name": v["given"], "_cursor": v["email"]},
            {v["family"]: v["nir"]},
        ):
            await call("GET", "/Patient" if "patient" not in params else "/Observation", params=params, headers=h)
        # Error paths: invalid resources, bad JSON, wrong/missing/malformed keys, unknown routes and ids.
        bad = patient_with(c) | {"birthDate": v["family"], "gender": v["phone-us"]}
        await call("POST", "/Patient", json=bad, headers=h)
        await call(
            "POST",
            "/Observation",
            content=('{"note": [{"text": "' + v["free-text"] + " " + v["email"]).encode(),
            headers=h | {"content-type": "application/fhir+json"},
        )
        await call("POST", "/Observation", json={**observation_with(c, pid), "status": v["nir"]}, headers=h)
        await call("PUT", f"/Observation/{oid}", json={**observation_with(c, pid), "id": v["mrn"]}, headers=h)
        await call("GET", f"/Observation/{oid}", headers={"x-patient-key": new_patient_key()})
        await call("GET", f"/Observation/{oid}", headers={"x-patient-key": v["email"]})
        await call("GET", f"/Observation/{oid}")
        await call("GET", f"/Patient/{v['family']}", headers=h)
        await call("GET", f"/{v['given']}/{v['email']}", headers=h, params={"q": v["phone-international"]})
        await call("DELETE", f"/Patient/{v['mrn']}", headers=h)
        await call("POST", f"/Patient/{v['family']}/$erase")
        await call(
            "POST",
            f"/Patient/{pid}/$rotate-key",
            json={"resourceType": "Parameters", "parameter": [{"name": "newKey", "valueString": v["email"]}]},
            headers=h,
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"request": {"method": "POST", "url": "Observation"}, "resource": observation_with(c, pid)},
                {"request": {"method": "PUT", "url": v["city"]}, "resource": {"resourceType": v["street"]}},
            ],
        }
        await call("POST", "", content=orjson.dumps(bundle), headers=h | {"content-type": "application/fhir+json"})
        await call("POST", "", content=b"[" + v["family"].encode(), headers=h | {"content-type": "application/fhir+json"})
        await call("GET", "/AuditEvent", params={"patient": pid}, headers=h)
        await call("GET", "/AuditEvent", params={"patient": v["family"], "name": v["email"]})
        await call("GET", f"/AuditEvent/{v['mrn']}")
        # Tokens and ids in headers: a bearer token that is refused, a request id that is not ours.
        await call("GET", f"/Patient/{pid}", client=raw, headers={"authorization": f"Bearer {v['bearer']}", "x-patient-key": key})
        await call("GET", f"/fhir/Patient/{pid}", client=raw, headers={"authorization": f"DPoP {v['bearer']}", "dpop": v["bearer"]})
        await call("GET", f"/fhir/Patient/{pid}", headers=h | {"x-request-id": v["email"], "traceparent": v["phone-us"]})
        await call("GET", f"/{v['street']}/{v['city']}", client=raw, params={"email": v["email"]})
        # Break-glass, refused to the development token (no second factor), canaries in body and path.
        dev = {"authorization": f"Bearer {mesh.dev_token}"}
        document = {"contentType": "application/pdf", "data": base64.b64encode(v["family"].encode()).decode()}
        await call(
            "POST",
            "/break-glass/requests",
            client=raw,
            headers=dev,
            json={"tenant": "dev", "patient_id": pid, "reason": f"{v['free-text']} {v['email']} {v['phone-local']}", "document": document},
        )
        await call("POST", "/break-glass/requests", client=raw, headers=dev, json={"tenant": v["city"], "reason": v["free-text"]})
        await call("GET", f"/break-glass/requests/{v['mrn']}", client=raw, headers=dev)
        await call("GET", "/break-glass/requests", client=raw, headers=dev, params={"tenant": v["family"]})
        # An integrity failure (a 500, hence an error report) on a record full of canaries.
        rows = await mesh.db_execute(
            "records", "SELECT body, version_id FROM resource_versions WHERE id = $1 ORDER BY version_id DESC", oid
        )
        body, version = bytes(rows[0][0]), rows[0][1]  # type: ignore[arg-type]
        tampered = bytearray(body)
        tampered[len(body) // 2] ^= 0x01
        await mesh.db_execute(
            "records", "UPDATE resource_versions SET body = $1 WHERE id = $2 AND version_id = $3", bytes(tampered), oid, version
        )
        try:
            failed = await call("GET", f"/Observation/{oid}", headers=h)
            assert failed.status_code == 500
        finally:
            await mesh.db_execute("records", "UPDATE resource_versions SET body = $1 WHERE id = $2 AND version_id = $3", body, oid, version)
        await call("POST", f"/Patient/{pid}/$erase")
    return seen


def outputs(mesh: RunningMesh) -> dict[str, bytes]:
    """Every log file of every service, and everything the collectors received."""
    found = {str(p.relative_to(mesh.state_dir)): p.read_bytes() for p in (mesh.state_dir / "logs").iterdir() if p.is_file()}
    found |= {str(p.relative_to(mesh.state_dir)): p.read_bytes() for p in (mesh.state_dir / "telemetry").iterdir() if p.is_file()}
    return found


def forms(kind: str, value: str) -> list[bytes]:
    out = [value.encode()]
    if kind.startswith("phone") or kind == "nir":
        digits = "".join(ch for ch in value if ch.isdigit())
        out += [digits.encode(), digits[-8:].encode()]
    return out


async def test_canaries_of_every_kind_never_reach_logs_traces_or_error_reports(mesh: RunningMesh) -> None:
    c = make_canaries()
    key = new_patient_key()
    statuses = await push_everywhere(mesh, c, key)
    assert {400, 401, 403, 404, 500} <= set(statuses), statuses  # the error paths were taken
    # Spans are exported in batches (every 5 s); error reports within a second.
    deadline = time.monotonic() + 20
    while not (mesh.telemetry.received("otlp") and any(b"IntegrityFailure" in e for e in mesh.telemetry.received("sentry"))):
        assert time.monotonic() < deadline, "the collectors received no spans or no error report"
        await asyncio.sleep(0.5)
    await asyncio.sleep(6)  # one more span batch
    reports = [
        json.loads(line)
        for e in mesh.telemetry.received("sentry")
        for line in e.splitlines()
        if line.startswith(b"{") and b'"exception"' in line
    ]
    assert reports and all("vars" not in f for r in reports for x in r["exception"]["values"] for f in x["stacktrace"]["frames"])
    haystacks = outputs(mesh)
    assert any(name.startswith("telemetry/otlp") for name in haystacks) and any(name.startswith("logs/") for name in haystacks)
    leaks = [
        (kind, name) for kind, value in c.values.items() for form in forms(kind, value) for name, data in haystacks.items() if form in data
    ]
    leaks += [
        ("patient-key", name)
        for form in secret_forms(base64.urlsafe_b64decode(key + "="))
        for name, data in haystacks.items()
        if form in data
    ]
    assert not leaks, f"canaries found in outputs: {leaks}"


def test_the_operator_cli_still_verifies_the_trail_after_all_that(mesh: RunningMesh) -> None:
    done = carevault(mesh, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
