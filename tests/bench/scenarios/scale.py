"""Issue 8, scale: read by id and patient-scoped search with 10,000 records of 100
patients, then with 1,000,000 records of 10,000 patients; p50 of the large set within
1.5 times the small one.

Seeding goes through a bulk path of the benchmark's own, not the API (a million
requests would take the whole run): the same encryption as records (the
carevault_crypto keyring, one data key per record, blind indexes from the records
FHIR module), written with PostgreSQL COPY into the mesh's records database, in
worker processes. The patients' escrow is made on first use, by the mesh itself.
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


async def _seed(total_patients: int, per_patient: int, pool: ProcessPoolExecutor) -> list[tuple[str, str, list[str]]]:
    """Seeds and returns (patient id, key, record ids) of every patient seeded."""
    dsn = _dsn(f"{DB_PREFIX}_records")
    loop = asyncio.get_running_loop()
    start = datetime.now(UTC)
    sizes = [min(CHUNK_PATIENTS, total_patients - i) for i in range(0, total_patients, CHUNK_PATIENTS)]
    seeded: list[tuple[str, str, list[str]]] = []
    pending = [loop.run_in_executor(pool, _seed_chunk, n, per_patient, start) for n in sizes]
    for future in asyncio.as_completed(pending):
        rows = await future
        await _copy(dsn, rows)
        ids_by_patient: dict[str, list[str]] = {}
        for head in rows[1]:
            ids_by_patient.setdefault(head[3], []).append(head[2])
        seeded += [(pid, key, ids_by_patient[pid]) for pid, key in rows[4]]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return seeded


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
    goal=Goal(text="p50 within 1.5 times the 10,000-record figure"),
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
    with ProcessPoolExecutor(max_workers=max(1, (os.cpu_count() or 2))) as pool:
        small = await _seed(*sizes["small"], pool)
        seeded_total += sum(len(ids) for _, _, ids in small)
        figures["small"] = {kind: await _measure(ctx, small, kind) for kind in ("read", "search")}
        extra = (sizes["large"][0] - sizes["small"][0], sizes["large"][1])
        seed_start = time.perf_counter()
        large = await _seed(*extra, pool)
        seed_seconds = time.perf_counter() - seed_start
        seeded_total += sum(len(ids) for _, _, ids in large)
        # The same patients as before are sampled: the only change is the size of the tables.
        figures["large"] = {kind: await _measure(ctx, small, kind) for kind in ("read", "search")}
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
                goal=Goal(text="p50 within 1.5 times the 10,000-record figure"),
                note=f"{seeded_total:,} records seeded by COPY in {time.perf_counter() - began:.0f} s ({extra[0] * extra[1] / seed_seconds:,.0f} records/s)",
            )
        )
    return rows
