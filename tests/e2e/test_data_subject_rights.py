"""GDPR Art. 15/20 and 17 through the mesh: a patient's whole record exported and
loaded again into another tenant; erasure leaves 410s, nothing of the patient in
any database or the blob store, no escrow, an audit tombstone and a journal entry;
after a restore from an older backup, `carevault erasure replay` erases again."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from carevault_records.fhir.bundle_convert import collection_as_transaction
from tests.audit_support import carevault, create_patient, events_since, last_seq, observation, pseudonym, verify
from tests.fhir_loader import comparable
from tests.support import RunningMesh, canary, drop_databases, free_port_offset, new_patient_key, running_mesh

FHIR_JSON = {"content-type": "application/fhir+json"}


async def make_record(fhir: httpx.AsyncClient, key: str) -> tuple[str, list[str]]:
    """A patient with a practitioner (directory), an encounter, observations, a
    condition, an updated version and an idempotent write; returns its id and every
    "Type/id" of the patient's records."""
    h = {"x-patient-key": key}
    patient_id = await create_patient(fhir, key)
    npi = str(uuid.uuid4().int)[:10]
    practitioner = await fhir.post(
        "/Practitioner", json={"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]}
    )
    assert practitioner.status_code == 201, practitioner.text
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"individual": {"reference": f"Practitioner/{practitioner.json()['id']}"}}],
    }
    created = [f"Patient/{patient_id}"]
    for resource in (encounter, observation(patient_id), observation(patient_id, "8480-6", 120.0)):
        resp = await fhir.post(f"/{resource['resourceType']}", json=resource, headers=h)
        assert resp.status_code == 201, resp.text
        created.append(f"{resource['resourceType']}/{resp.json()['id']}")
    condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient_id}"}, "code": {"text": "hypertension"}}
    resp = await fhir.post("/Condition", json=condition, headers=h | {"idempotency-key": str(uuid.uuid4())})
    assert resp.status_code == 201, resp.text
    created.append(f"Condition/{resp.json()['id']}")
    obs = await fhir.get(f"/{created[2]}", headers=h)
    assert (await fhir.put(f"/{created[2]}", json={**obs.json(), "status": "amended"}, headers=h)).status_code == 200
    return patient_id, created


def references(resource: Any) -> list[str]:
    if isinstance(resource, dict):
        return [v for k, v in resource.items() if k == "reference" and isinstance(v, str)] + [
            r for v in resource.values() for r in references(v)
        ]
    if isinstance(resource, list):
        return [r for v in resource for r in references(v)]
    return []


def records_client(mesh: RunningMesh, tenant: str) -> httpx.AsyncClient:
    """records as api calls it (api's certificate), for a tenant the dev token cannot reach."""
    # Any patient of the tenant, as api grants the development token (records enforces the scope).
    headers = {
        "x-carevault-tenant": tenant,
        "x-carevault-principal": "importer",
        "x-carevault-base-url": "https://other/fhir",
        "x-carevault-patient-scope": "*",
    }
    return httpx.AsyncClient(base_url=mesh.layout.url("records"), verify=mesh.ssl_context("api"), headers=headers, timeout=60)


async def test_export_streams_the_whole_record_and_loads_again_into_another_tenant(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    key = new_patient_key()
    patient_id, created = await make_record(fhir, key)
    async with fhir.stream("GET", f"/Patient/{patient_id}/$everything", headers={"x-patient-key": key}) as resp:
        assert resp.status_code == 200
        assert "content-length" not in resp.headers  # streamed, not buffered whole
        exported = orjson.loads(await resp.aread())
    assert exported["resourceType"] == "Bundle" and exported["type"] == "searchset"
    entries = exported["entry"]
    assert entries[0]["resource"]["resourceType"] == "Patient" and exported["total"] == len(entries)
    matched = [e for e in entries if e["search"]["mode"] == "match"]
    assert sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in matched) == sorted(created)
    assert [e["resource"]["resourceType"] for e in entries if e["search"]["mode"] == "include"] == ["Practitioner"]
    amended = next(e["resource"] for e in entries if f"Observation/{e['resource']['id']}" == created[2])
    assert amended["status"] == "amended"  # current versions
    assert (await fhir.get(f"/Patient/{patient_id}/$everything", headers={"x-patient-key": new_patient_key()})).status_code == 403

    # What a patient does with it: load it into another tenant (or another FHIR server) as a transaction.
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": e["fullUrl"], "resource": e["resource"]} for e in entries],
    }
    transaction = collection_as_transaction(orjson.loads(orjson.dumps(collection)))
    tenant, new_key = f"import-{uuid.uuid4().hex[:8]}", new_patient_key()
    async with records_client(mesh, tenant) as other:
        loaded = await other.post("/fhir", content=orjson.dumps(transaction), headers=FHIR_JSON | {"x-patient-key": new_key})
        assert loaded.status_code == 200, loaded.text[:2000]
        new_patient = next(
            e["response"]["location"].split("/")[1] for e in loaded.json()["entry"] if e["response"]["location"].startswith("Patient/")
        )
        again = await other.get(f"/fhir/Patient/{new_patient}/$everything", headers={"x-patient-key": new_key})
    assert again.status_code == 200
    reloaded = [e["resource"] for e in again.json()["entry"]]
    assert Counter(orjson.dumps(comparable(r), option=orjson.OPT_SORT_KEYS) for r in reloaded) == Counter(
        orjson.dumps(comparable(e["resource"]), option=orjson.OPT_SORT_KEYS) for e in entries
    )
    # References were rewritten to the new tenant's ids, and all resolve within the export.
    ids = {f"{r['resourceType']}/{r['id']}" for r in reloaded}
    assert all(ref in ids for r in reloaded for ref in references(r))
    assert patient_id not in again.text


async def test_export_takes_type_and_since_and_refuses_what_it_does_not_support(fhir: httpx.AsyncClient) -> None:
    key = new_patient_key()
    patient_id, created = await make_record(fhir, key)
    h = {"x-patient-key": key}
    url = f"/Patient/{patient_id}/$everything"

    def matched(resp: httpx.Response) -> list[str]:
        assert resp.status_code == 200, resp.text
        return sorted(
            f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in resp.json()["entry"] if e["search"]["mode"] == "match"
        )

    # _type: these types only (repeated or comma-separated); the Patient only if named.
    observations = sorted(r for r in created if r.startswith("Observation/"))
    assert matched(await fhir.get(url, params={"_type": "Observation"}, headers=h)) == observations
    both = matched(await fhir.get(url, params=[("_type", "Observation"), ("_type", "Patient,Condition")], headers=h))
    assert both == sorted(r for r in created if r.split("/")[0] in ("Observation", "Patient", "Condition"))
    # _since: what changed at or after that instant (here: the amended Observation's new version).
    amended = (await fhir.get(f"/{created[2]}", headers=h)).json()["meta"]["lastUpdated"]
    assert matched(await fhir.get(url, params={"_since": amended}, headers=h)) == [created[2]]
    assert matched(await fhir.get(url, params={"_since": "2000"}, headers=h)) == sorted(created)
    assert matched(await fhir.get(url, params={"_since": "2999-01-01T00:00:00Z"}, headers=h)) == []
    # Bad values, and what is not supported, are a 400 naming the parameter, before any byte is streamed.
    for params in ({"_since": "zz"}, {"_since": "gt2020"}, {"_type": "NoSuchType"}, {"_type": ""}, {"start": "2020"}, {"_count": "10"}):
        refused = await fhir.get(url, params=params, headers=h)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert next(iter(params)) in refused.json()["issue"][0]["diagnostics"]
    # Prefer: handling=lenient ignores the unsupported ones (not the malformed).
    lenient = h | {"prefer": "handling=lenient"}
    assert matched(await fhir.get(url, params={"start": "2020", "_count": "10"}, headers=lenient)) == sorted(created)
    assert (await fhir.get(url, params={"_since": "zz"}, headers=lenient)).status_code == 400


async def raw_database(mesh: RunningMesh, service: str) -> bytes:
    """Every byte a service's database holds: the SQLite files as they are on disk
    (free pages and write-ahead log included), or every row of every table."""
    url = mesh.layout.database_url(service)
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    out = bytearray()
    for (table,) in await mesh.db_execute(service, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
        for row in await mesh.db_execute(service, f'SELECT * FROM "{table}"'):
            out += b"\x00".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    return bytes(out)


async def assert_nothing_left(mesh: RunningMesh, patient_id: str, created: list[str], blobs: tuple[str, ...] | list[str] = ()) -> None:
    ids = [patient_id.encode()] + [ref.split("/")[1].encode() for ref in created] + [b.encode() for b in blobs]
    for service in ("records", "keyservice", "fileservice"):
        haystack = await raw_database(mesh, service)
        assert not [i for i in ids if i in haystack], f"{service} still holds something of the erased patient"
    # api keeps the audit tombstone: resource ids of what was erased, the patient as a pseudonym only.
    assert patient_id.encode() not in await raw_database(mesh, "api")
    stored = [p for p in (mesh.state_dir / "blobs").rglob("*") if p.is_file()]
    assert not [p for p in stored if any(b in p.name for b in blobs)], "a blob of the erased patient is still stored"
    contents = b"".join(p.read_bytes() for p in stored)
    assert not [i for i in ids if i in contents]
    escrow = await mesh.db_execute("keyservice", "SELECT count(*) FROM escrow_packages WHERE patient_id = $1", patient_id)
    assert escrow == [(0,)], "the escrow is not gone"


async def assert_erased(fhir: httpx.AsyncClient, patient_id: str, created: list[str], key: str) -> None:
    h = {"x-patient-key": key}
    for ref in created:
        resp = await fhir.get(f"/{ref}", headers=h)
        assert resp.status_code == 410, (ref, resp.status_code, resp.text)
        assert resp.json()["issue"][0]["code"] == "deleted"
        assert (await fhir.get(f"/{ref}/_history", headers=h)).status_code == 410
    assert (await fhir.get("/Observation", params={"patient": patient_id}, headers=h)).status_code == 410
    assert (await fhir.get(f"/Patient/{patient_id}/$everything", headers=h)).status_code == 410
    assert (await fhir.post("/Observation", json=observation(patient_id), headers=h)).status_code == 410
    assert (await fhir.delete(f"/{created[1]}", headers=h)).status_code == 410


async def add_binary(fhir: httpx.AsyncClient, mesh: RunningMesh, key: str, patient_id: str) -> tuple[str, list[str]]:
    """A Binary of the patient (a scanned letter, with a canary); its id and the blob ids fileservice gained."""
    before = {row[0] for row in await mesh.db_execute("fileservice", "SELECT id FROM blobs")}
    headers = {"content-type": "application/pdf", "x-security-context": f"Patient/{patient_id}", "x-patient-key": key}
    created = await fhir.post("/Binary", content=b"%PDF " + canary("letter").encode() * 100, headers=headers)
    assert created.status_code == 201, created.text
    blobs = sorted({str(row[0]) for row in await mesh.db_execute("fileservice", "SELECT id FROM blobs")} - before)
    assert len(blobs) == 1
    return f"Binary/{created.json()['id']}", blobs


async def test_erasure_leaves_410s_no_trace_of_the_patient_no_escrow_and_a_tombstone(fhir: httpx.AsyncClient, mesh: RunningMesh) -> None:
    key = new_patient_key()
    patient_id, created = await make_record(fhir, key)
    binary, blobs = await add_binary(fhir, mesh, key, patient_id)
    created.append(binary)
    new_key = new_patient_key()
    rotate = {"resourceType": "Parameters", "parameter": [{"name": "newKey", "valueString": new_key}]}
    assert (await fhir.post(f"/Patient/{patient_id}/$rotate-key", json=rotate, headers={"x-patient-key": key})).status_code == 200
    escrowed = await mesh.db_execute("keyservice", "SELECT count(*) FROM escrow_packages WHERE patient_id = $1", patient_id)
    assert escrowed[0][0] >= 2  # type: ignore[operator]  # both key versions

    before = await last_seq(mesh)
    # With the patient's key (optional), records can list the blobs sealed in the Binary records.
    erased = await fhir.post(f"/Patient/{patient_id}/$erase", headers={"x-patient-key": new_key})
    assert erased.status_code == 200, erased.text
    counts = {p["name"]: p["valueInteger"] for p in erased.json()["parameter"]}
    assert counts["resources"] == len(created) and counts["key_material"] == 1 and counts["escrow_packages"] == escrowed[0][0]
    assert counts["idempotency_records"] == 1
    assert (counts["blobs"], counts["binaries_without_key"]) == (1, 0)
    assert await mesh.db_execute("fileservice", "SELECT id FROM blobs WHERE id = $1", blobs[0]) == []

    p = pseudonym(mesh, patient_id)
    assert await events_since(mesh, before) == [("fhir.erase.attempt", None, "Patient", None, p), ("fhir.erase", 200, "Patient", None, p)]
    (tombstone,) = await mesh.db_execute("api", "SELECT details, legal_basis FROM audit_events WHERE seq = $1", before + 2)
    assert tombstone[1] == "gdpr-art-17" and set(orjson.loads(str(tombstone[0]))) == set(counts)
    journal = await mesh.db_execute("api", "SELECT tenant, completed_at FROM erasure_journal WHERE pseudonym = $1", p)
    assert len(journal) == 1 and journal[0][0] == "dev" and journal[0][1] is not None

    await assert_erased(fhir, patient_id, created, new_key)
    await assert_nothing_left(mesh, patient_id, created, blobs)
    assert (await fhir.post(f"/Patient/{patient_id}/$erase")).status_code == 200  # idempotent
    before = await last_seq(mesh)
    unknown = str(uuid.uuid4())
    assert (await fhir.post(f"/Patient/{unknown}/$erase")).status_code == 404
    assert [(e, o) for e, o, *_ in await events_since(mesh, before)] == [("fhir.erase.attempt", None), ("fhir.erase", 404)]
    assert (await fhir.get(f"/Patient/{unknown}", headers={"x-patient-key": new_key})).status_code == 404  # no tombstone
    assert verify(mesh)["ok"]


# -- restore from an older backup, then replay the erasure journal --------------------------


async def _backup(mesh: RunningMesh, service: str, backup: Path) -> None:
    url = mesh.layout.database_url(service)
    if url.startswith("sqlite"):
        shutil.copyfile(url.split("///", 1)[1], backup)
    else:
        name = url.rsplit("/", 1)[1]
        await _postgres(f'DROP DATABASE IF EXISTS "{name}_bak" WITH (FORCE)', f'CREATE DATABASE "{name}_bak" TEMPLATE "{name}"')


async def _restore(mesh: RunningMesh, service: str, backup: Path) -> None:
    url = mesh.layout.database_url(service)
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        shutil.copyfile(backup, path)
    else:
        name = url.rsplit("/", 1)[1]
        await _postgres(
            f'DROP DATABASE "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}" TEMPLATE "{name}_bak"', f'DROP DATABASE "{name}_bak"'
        )


async def _postgres(*statements: str) -> None:
    import asyncpg

    from tests.support import POSTGRES_URL

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _restart(mesh: RunningMesh, services: tuple[str, ...], between: Any) -> None:
    for service in services:
        mesh.mesh.stop_one(service)
    asyncio.run(between()) if asyncio.iscoroutinefunction(between) else between()
    for service in services:
        mesh.mesh.start_one(service)
    mesh.mesh.wait_ready(timeout=60, services=services)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def restorable(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A mesh of its own: this test stops services and swaps their databases."""
    from tests.conftest import assert_nothing_secret_at_rest

    offset = free_port_offset()
    try:
        with running_mesh(tmp_path_factory.mktemp(f"restore-{request.param}"), offset, request.param) as running:
            yield running
        assert_nothing_secret_at_rest(running)
    finally:
        if request.param == "postgres":
            asyncio.run(drop_databases(f"cvtest{offset}"))


def test_erasure_replay_after_a_restore_from_an_older_backup(restorable: RunningMesh, tmp_path: Path) -> None:
    mesh = restorable
    data = ("records", "keyservice")

    async def prepare() -> tuple[str, list[str], str]:
        async with mesh.fhir() as client:
            key = new_patient_key()
            patient_id, created = await make_record(client, key)
            keep_key = new_patient_key()
            kept = await create_patient(client, keep_key)
            return patient_id, created, key + " " + kept + " " + keep_key

    patient_id, created, rest = asyncio.run(prepare())
    key, kept, keep_key = rest.split()

    async def take_backup() -> None:
        for service in data:
            await _backup(mesh, service, tmp_path / f"{service}.sqlite")

    _restart(mesh, data, take_backup)  # the nightly backup, before the erasure

    async def erase() -> None:
        async with mesh.fhir() as client:
            assert (await client.post(f"/Patient/{patient_id}/$erase")).status_code == 200
            await assert_erased(client, patient_id, created, key)

    asyncio.run(erase())

    async def restore() -> None:
        for service in data:
            await _restore(mesh, service, tmp_path / f"{service}.sqlite")

    _restart(mesh, data, restore)  # disaster recovery from that backup: the erased patient is back

    async def read(patient: str, with_key: str) -> int:
        async with mesh.fhir() as client:
            return (await client.get(f"/Patient/{patient}", headers={"x-patient-key": with_key})).status_code

    assert asyncio.run(read(patient_id, key)) == 200
    dry = carevault(mesh, "erasure", "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [orjson.loads(line)["matched"] for line in dry.stdout.splitlines()] == [1, 1]
    # The journal's second copy, in api's log stream (for when api's database was restored too).
    logged = [orjson.loads(line) for line in mesh.logs("api").splitlines() if '"patient erased"' in line]
    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(orjson.dumps({"tenant": e["tenant"], "pseudonym": e["pseudonym"]}).decode() + "\n" for e in logged))
    from_logs = carevault(mesh, "erasure", "replay", "--dry-run", "--journal", str(journal))
    assert [orjson.loads(line)["matched"] for line in from_logs.stdout.splitlines()] == [1, 1], from_logs.stderr
    assert asyncio.run(read(patient_id, key)) == 200
    done = carevault(mesh, "erasure", "replay")
    assert done.returncode == 0, done.stderr
    summaries = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(s["service"], s["erased"]) for s in summaries] == [("records", 1), ("keyservice", 1)]
    assert patient_id not in done.stdout  # counts only

    async def check() -> None:
        async with mesh.fhir() as client:
            await assert_erased(client, patient_id, created, key)
        await assert_nothing_left(mesh, patient_id, created)

    asyncio.run(check())
    assert asyncio.run(read(kept, keep_key)) == 200  # nobody else was touched
