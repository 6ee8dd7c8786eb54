"""Issue 8, scale: read by id and patient-scoped search with 10,000 records of 100
patients, then with 1,000,000 records of 10,000 patients; p50 of the large set within
1.5 times the small one.

Seeding goes through a bulk path of the benchmark's own, not the API (a million
requests would take the whole run): the same encryption as records (the
carevault_crypto keyring, one data key per record, blind indexes from the records
FHIR module), written with PostgreSQL COPY into the mesh's records database by
worker processes, one per core, each making a chunk of rows and COPYing it itself.
For the large set the indexes and primary keys of the bulk tables are dropped first
and built again after (as pg_restore does), then VACUUM ANALYZE runs before
anything is measured. The patients' escrow is made on first use, by the mesh itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson

from tests.bench.fhir import FHIR_JSON, observation
from tests.bench.framework import RECORDS, BenchContext, Goal, Measured, Skip, scenario
from tests.bench.loadgen import run_load
from tests.bench.stack import DB_PREFIX, _dsn

TENANT = "dev"
SMALL = (100, 100)  # patients, observations each: 10,000 records
LARGE = (10_000, 100)  # 1,000,000 records
# Issue 8: read and search p50 at LARGE within this factor of the same at SMALL.
MAX_P50_FACTOR = 1.5
CODES = ("85354-9", "8867-4", "29463-7", "8302-2", "2708-6")
CHUNK_PATIENTS = 50
SCALE_WORKERS = 4


def _seed_chunk(patient_count: int, per_patient: int, start: datetime) -> tuple[list[tuple[Any, ...]], ...]:
    """Rows for ``patient_count`` patients (runs in a worker process)."""
    from carevault_crypto import PatientContext, PatientKey, PatientKeyring, RecordContext, create_verifier
    from carevault_crypto.export import patient_key_to_header
    from carevault_records.fhir.search import extract_index_terms

    patients, heads, versions, tokens, keys = [], [], [], [], []
    for p in range(patient_count):
        patient_id = str(uuid.uuid4())
        key = PatientKey.generate()
        context = PatientContext(TENANT, patient_id)
        keyring, wrapped = PatientKeyring.create(key, context)
        patients.append((TENANT, patient_id, 1, create_verifier(key, context), wrapped, "", start))
        keys.append((patient_id, patient_key_to_header(key)))
        for i in range(per_patient):
            resource = observation(patient_id)
            resource["code"]["coding"][0]["code"] = CODES[i % len(CODES)]
            when = start - timedelta(days=i)
            resource["effectiveDateTime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            resource["id"] = rid = str(uuid.uuid4())
            stamp = start + timedelta(microseconds=p * per_patient + i)
            body = keyring.seal_record(orjson.dumps(resource), RecordContext(TENANT, patient_id, rid, 1, "Observation"))
            heads.append((TENANT, "Observation", rid, patient_id, 1, False, stamp))
            versions.append((TENANT, "Observation", rid, 1, patient_id, False, True, stamp, body))
            for term in {(t.param, t.value) for t in extract_index_terms(resource)}:
                tokens.append((TENANT, "Observation", rid, term[0], keyring.blind_index(*term), patient_id))
    return patients, heads, versions, tokens, keys


async def _copy(dsn: str, rows: tuple[list[tuple[Any, ...]], ...]) -> None:
    patients, heads, versions, tokens, _ = rows
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "patients",
                records=patients,
                columns=["tenant", "id", "key_version", "verifier", "wrapped_keyring", "escrow_keyset", "updated_at"],
            )
            await conn.copy_records_to_table(
                "resources", records=heads, columns=["tenant", "resource_type", "id", "patient_id", "version_id", "deleted", "last_updated"]
            )
            await conn.copy_records_to_table(
                "resource_versions",
                records=versions,
                columns=["tenant", "resource_type", "id", "version_id", "patient_id", "deleted", "encrypted", "last_updated", "body"],
            )
            await conn.copy_records_to_table(
                "search_tokens", records=tokens, columns=["tenant", "resource_type", "resource_id", "param", "token", "patient_id"]
            )
    finally:
        await conn.close()


def _seed_and_copy(
    dsn: str, patient_count: int, per_patient: int, start: datetime
) -> tuple[list[tuple[str, str, list[str]]], float, float]:
    """One chunk, in a worker process: rows made (encrypted) then COPYed by this same
    process, so that generation in one worker overlaps the COPY of the other and no
    row travels through the parent. Returns (patient id, key, record ids) and the
    seconds spent making and copying."""
    began = time.perf_counter()
    rows = _seed_chunk(patient_count, per_patient, start)
    made = time.perf_counter()
    asyncio.run(_copy(dsn, rows))
    ids_by_patient: dict[str, list[str]] = {}
    for head in rows[1]:
        ids_by_patient.setdefault(head[3], []).append(head[2])
    return [(pid, key, ids_by_patient[pid]) for pid, key in rows[4]], made - began, time.perf_counter() - made


#: The tables a bulk seed fills: their indexes and primary keys are dropped before, and
#: built again after, as pg_restore does (a sorted build instead of millions of
#: random B-tree insertions: most of the seeding time otherwise).
BULK_TABLES = ("resources", "resource_versions", "search_tokens")


async def _drop_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drops the indexes and primary keys of BULK_TABLES; returns the DDL that restores them."""
    restore: list[str] = []
    for table in BULK_TABLES:
        for name, definition in await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'", table
        ):
            restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, definition in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1", table):
            restore.append(definition)
            await conn.execute(f'DROP INDEX "{name}"')
    return restore


async def _seed(
    total_patients: int, per_patient: int, pool: ProcessPoolExecutor, *, bulk: bool = False
) -> tuple[list[tuple[str, str, list[str]]], dict[str, float]]:
    """Seeds and returns (patient id, key, record ids) of every patient seeded, and
    where the time went (seconds: making rows and COPY summed over workers; wall
    time of the load, of the index build and of VACUUM ANALYZE)."""
    dsn = _dsn(f"{DB_PREFIX}_records")
    loop = asyncio.get_running_loop()
    start = datetime.now(UTC)
    sizes = [min(CHUNK_PATIENTS, total_patients - i) for i in range(0, total_patients, CHUNK_PATIENTS)]
    seeded: list[tuple[str, str, list[str]]] = []
    timing = {"drop": 0.0, "make": 0.0, "copy": 0.0, "load": 0.0, "index": 0.0, "vacuum": 0.0}
    conn = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        restore = await _drop_indexes(conn) if bulk else []
        timing["drop"] = time.perf_counter() - began
        began = time.perf_counter()
        try:
            for future in asyncio.as_completed([loop.run_in_executor(pool, _seed_and_copy, dsn, n, per_patient, start) for n in sizes]):
                patients, make, copy = await future
                seeded += patients
                timing["make"] += make
                timing["copy"] += copy
        finally:
            timing["load"] = time.perf_counter() - began
            began = time.perf_counter()
            await conn.execute("SET maintenance_work_mem = '256MB'")
            for statement in restore:
                await conn.execute(statement)
            timing["index"] = time.perf_counter() - began
        began = time.perf_counter()
        # Statistics for the planner, and the visibility map set now rather than by an
        # autovacuum in the middle of the measurement.
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(BULK_TABLES)}, patients")
        timing["vacuum"] = time.perf_counter() - began
    finally:
        await conn.close()
    return seeded, timing


# The statements records runs for the two measured requests (resources/repository.py),
# EXPLAIN ANALYZEd at each size: the plans say whether the indexes are used, and the
# server-side times do not depend on how busy the machine is as much as p50 does.
_SQL = {
    "token lookup": (
        "SELECT resource_id FROM search_tokens WHERE tenant = $1 AND patient_id = $2 AND resource_type = 'Observation' "
        "AND param = 'code' AND token = ANY($3::varchar[])"
    ),
    "heads": (
        "SELECT * FROM resources WHERE tenant = $1 AND resource_type = 'Observation' AND deleted IS false "
        "AND patient_id = $2 AND id = ANY($3::varchar[]) ORDER BY last_updated, id LIMIT 21"
    ),
    "read": (
        "SELECT v.* FROM resource_versions v JOIN resources r ON r.tenant = v.tenant AND r.resource_type = v.resource_type "
        "AND r.id = v.id AND r.version_id = v.version_id WHERE v.tenant = $1 AND (v.resource_type, v.id) IN (('Observation', $2)) "
        "AND r.deleted IS false"
    ),
}


def _plan_facts(node: dict[str, Any], found: set[str]) -> set[str]:
    if "Index Name" in node:
        found.add(node["Index Name"])
    elif node.get("Node Type") == "Seq Scan":
        found.add(f"Seq Scan on {node.get('Relation Name')}")
    for child in node.get("Plans", []):
        _plan_facts(child, found)
    return found


async def _explain(sample: list[tuple[str, str, list[str]]], rounds: int = 40) -> dict[str, tuple[float, set[str]]]:
    """Per statement: median execution time (ms) and the indexes (or seq scans) its plan used."""
    rng = random.Random(11)
    conn = await asyncpg.connect(_dsn(f"{DB_PREFIX}_records"))
    times: dict[str, list[float]] = {name: [] for name in _SQL}
    used: dict[str, set[str]] = {name: set() for name in _SQL}
    try:
        for _ in range(rounds):
            patient_id, _key, ids = sample[rng.randrange(len(sample))]
            token = await conn.fetchval(
                "SELECT token FROM search_tokens WHERE tenant = $1 AND patient_id = $2 AND param = 'code' LIMIT 1", TENANT, patient_id
            )
            found = await conn.fetch(_SQL["token lookup"], TENANT, patient_id, [token])
            args = {
                "token lookup": (TENANT, patient_id, [token]),
                "heads": (TENANT, patient_id, [r[0] for r in found]),
                "read": (TENANT, ids[rng.randrange(len(ids))]),
            }
            for name, sql in _SQL.items():
                plan = orjson.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args[name]))[0]
                times[name].append(plan["Execution Time"])
                _plan_facts(plan["Plan"], used[name])
    finally:
        await conn.close()
    return {name: (sorted(values)[len(values) // 2], used[name]) for name, values in times.items()}


async def _measure(ctx: BenchContext, sample: list[tuple[str, str, list[str]]], kind: str) -> tuple[float, float, float]:
    rng = random.Random(7)
    headers = {"accept": FHIR_JSON, **ctx.auth_headers}

    def make(worker: int) -> Any:
        async def read(session: aiohttp.ClientSession) -> int:
            pid, key, ids = sample[rng.randrange(len(sample))]
            request_headers = {**headers, "x-patient-key": key}
            if kind == "read":
                url = f"/fhir/Observation/{ids[rng.randrange(len(ids))]}"
            else:
                url = f"/fhir/Observation?patient={pid}&code=http://loinc.org|{CODES[rng.randrange(len(CODES))]}&_count=20"
            async with session.get(url, headers=request_headers) as resp:
                await resp.read()
                return resp.status

        return read

    # Few workers: the comparison is of what a request costs at each size, not of
    # how a saturated machine queues them.
    spec = dataclasses.replace(ctx.spec, concurrency=SCALE_WORKERS)
    result = await run_load(ctx.gateway, make, spec, frozenset({200}))
    return result.stats.rate, result.stats.p50_ms, result.stats.p99_ms


@scenario(
    "records-scale",
    group=RECORDS,
    title="Scale: read and patient search at 1,000,000 records / 10,000 patients vs 10,000 records",
    goal=Goal(text=f"p50 within {MAX_P50_FACTOR:g} times the 10,000-record figure"),
    # Seeding a million records takes several minutes here (about 3,000 records/s on 2 cores).
    timeout=1200,
    in_default_run=False,
)
async def records_scale(ctx: BenchContext) -> list[Measured]:
    if ctx.smoke:
        raise Skip("not in --smoke (seeds a million records)")
    sizes = {"small": SMALL, "large": LARGE}
    if os.environ.get("CAREVAULT_BENCH_SCALE_PATIENTS"):
        sizes["large"] = (int(os.environ["CAREVAULT_BENCH_SCALE_PATIENTS"]), LARGE[1])
    figures: dict[str, dict[str, tuple[float, float, float]]] = {}
    seeded_total = 0
    began = time.perf_counter()
    # One worker per core: each makes a chunk's rows then COPYs them itself.
    with ProcessPoolExecutor(max_workers=max(1, os.cpu_count() or 2)) as pool:
        small, _ = await _seed(*sizes["small"], pool)
        seeded_total += sum(len(ids) for _, _, ids in small)
        # Both sizes are measured on a settled database (vacuumed, checkpointed): the
        # small one otherwise met the checkpoint of its own seeding and looked slower.
        await ctx.quiet()
        figures["small"] = {kind: await _measure(ctx, small, kind) for kind in ("read", "search")}
        plans = {"small": await _explain(small)}
        extra = (sizes["large"][0] - sizes["small"][0], sizes["large"][1])
        seed_start = time.perf_counter()
        large, timing = await _seed(*extra, pool, bulk=True)
        seed_seconds = time.perf_counter() - seed_start
        seeded_total += sum(len(ids) for _, _, ids in large)
        del large
        # The same patients as before are sampled: the only change is the size of the tables.
        await ctx.quiet()
        figures["large"] = {kind: await _measure(ctx, small, kind) for kind in ("read", "search")}
        plans["large"] = await _explain(small)
    sql = "; ".join(
        f"{name} {plans['small'][name][0]:.2f} → {plans['large'][name][0]:.2f} ms ({', '.join(sorted(plans['large'][name][1]))})"
        for name in _SQL
    )
    where = (
        f"dropping indexes {timing['drop']:.0f} s, load {timing['load']:.0f} s (making rows {timing['make']:.0f} s and COPY {timing['copy']:.0f} s, summed over workers), "
        f"index build {timing['index']:.0f} s, VACUUM ANALYZE {timing['vacuum']:.0f} s"
    )
    rows: list[Measured] = []
    for kind, title in (("read", "read by id"), ("search", "patient-scoped search (token)")):
        small_p50 = figures["small"][kind][1]
        large_rate, large_p50, large_p99 = figures["large"][kind]
        factor = large_p50 / small_p50 if small_p50 else float("nan")
        rows.append(
            Measured(
                rate=large_rate,
                p50_ms=large_p50,
                p99_ms=large_p99,
                label=f"{title} at {seeded_total:,} records: p50 {factor:.2f} times the 10,000-record p50 ({small_p50:.1f} ms)",
                goal=Goal(text=f"p50 within {MAX_P50_FACTOR:g} times the 10,000-record figure"),
                met=factor <= MAX_P50_FACTOR,
                note=(
                    f"{seeded_total:,} records seeded by COPY in {time.perf_counter() - began:.0f} s "
                    f"({extra[0] * extra[1] / seed_seconds:,.0f} records/s; {where}). "
                    f"SQL median execution, EXPLAIN ANALYZE at 10,000 → {seeded_total:,} records: {sql}"
                ),
            )
        )
    return rows
