"""Issue 8: FHIR records through the whole mesh (gateway TLS → api → records →
keyservice, PostgreSQL). Until the FHIR endpoints exist on a branch, each of these
says "not available yet: <status>" in the report instead of figures."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.bench.fhir import FHIR_JSON, created_id, dumps, new_marker, observation, patient, patient_key
from tests.bench.framework import BASELINE, RECORDS, BenchContext, Goal, Measured, Reply, Skip, Workload, scenario
from tests.bench.loadgen import Endpoint, Operation, Stats, percentile
from tests.bench.procstat import CpuMeter
from tests.bench.scenarios.plain import stored_reads

OBSERVATIONS_PER_WORKER = 4
# As the e2e loader: two dev bundles name practitioners no directory bundle has.
INGEST_PATH = "/fhir?placeholders=true"
SETUP_PARALLELISM = 8


class SetupFailed(Exception):
    pass


@dataclass(frozen=True)
class PatientRef:
    id: str
    key: str


def expect(reply: Reply, statuses: set[int], what: str) -> Reply:
    """A setup call that must succeed: 404 (no such endpoint yet) skips, anything else unexpected fails."""
    BenchContext.require_endpoint(reply, what)
    if reply.status not in statuses:
        raise SetupFailed(f"{what} answered {reply.status}: {reply.body[:200]!r}")
    return reply


def fhir_headers(ctx: BenchContext, key: str | None = None, *, body: bool = False) -> dict[str, str]:
    headers = {"accept": FHIR_JSON, **ctx.auth_headers}
    if body:
        headers["content-type"] = FHIR_JSON
    if key is not None:
        headers["x-patient-key"] = key
    return headers


async def create_patient(ctx: BenchContext) -> PatientRef:
    key = patient_key()
    reply = expect(
        await ctx.call(ctx.gateway, "POST", "/fhir/Patient", body=dumps(patient(new_marker())), headers=fhir_headers(ctx, key, body=True)),
        {201},
        "POST /fhir/Patient",
    )
    return PatientRef(created_id(reply.status, dict(reply.headers), reply.body), key)


async def bounded_gather(n: int, make: Any) -> list[Any]:
    """Run ``make()`` n times, at most SETUP_PARALLELISM at once."""
    gate = asyncio.Semaphore(SETUP_PARALLELISM)

    async def one() -> Any:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def worker_patients(ctx: BenchContext) -> list[PatientRef]:
    """One patient (and key) per worker, shared by the scenarios of the run."""
    patients: list[PatientRef] | None = ctx.shared.get("patients")
    if patients is None:
        first = await create_patient(ctx)  # a 404 here skips the scenario before any load
        rest = await bounded_gather(ctx.spec.concurrency - 1, lambda: create_patient(ctx))
        patients = ctx.shared["patients"] = [first, *rest]
    return patients


@scenario(
    "observation-create",
    group=RECORDS,
    title="Observation create (~1 KB), one patient per worker",
    compare_to="baseline-insert",
    goal=Goal(min_ratio=0.35, max_p99_ms=60),
)
async def observation_create(ctx: BenchContext) -> Workload:
    patients = await worker_patients(ctx)
    prepared = [(dumps(observation(p.id)), fhir_headers(ctx, p.key, body=True)) for p in patients]

    def make(worker: int) -> Operation:
        body, headers = prepared[worker % len(prepared)]

        async def create(session: aiohttp.ClientSession) -> int:
            async with session.post("/fhir/Observation", data=body, headers=headers) as resp:
                await resp.read()
                return resp.status

        return create

    return Workload(ctx.gateway, make, frozenset({201}))


@scenario(
    "observation-read",
    group=RECORDS,
    title="Observation read by id (~1 KB)",
    compare_to="baseline-read",
    goal=Goal(min_ratio=0.35, max_p99_ms=60),
)
async def observation_read(ctx: BenchContext) -> Workload:
    patients = await worker_patients(ctx)

    async def seed(p: PatientRef) -> tuple[str, dict[str, str]]:
        reply = expect(
            await ctx.call(
                ctx.gateway, "POST", "/fhir/Observation", body=dumps(observation(p.id)), headers=fhir_headers(ctx, p.key, body=True)
            ),
            {201},
            "POST /fhir/Observation",
        )
        return f"/fhir/Observation/{created_id(reply.status, dict(reply.headers), reply.body)}", fhir_headers(ctx, p.key)

    gate = asyncio.Semaphore(SETUP_PARALLELISM)

    async def seed_bounded(p: PatientRef) -> tuple[str, dict[str, str]]:
        async with gate:
            return await seed(p)

    per_worker = [await asyncio.gather(*(seed_bounded(p) for _ in range(OBSERVATIONS_PER_WORKER))) for p in patients]

    def make(worker: int) -> Operation:
        mine = per_worker[worker % len(per_worker)]
        position = 0

        async def read(session: aiohttp.ClientSession) -> int:
            nonlocal position
            path, headers = mine[position % len(mine)]
            position += 1
            async with session.get(path, headers=headers) as resp:
                await resp.read()
                return resp.status

        return read

    return Workload(ctx.gateway, make)


@scenario(
    "floor-read",
    group=RECORDS,
    title="Floor of the architecture: the baseline's SELECT behind three empty hops (TLS, then mTLS twice; FastAPI and aiohttp as the mesh)",
    compare_to="baseline-read",
    goal=Goal(text="none: a reference; no authentication, audit, key check or decryption, no logic in any hop"),
)
async def floor_read(ctx: BenchContext) -> Workload:
    if ctx.floor is None:
        raise Skip("no floor chain in this stack")
    return await stored_reads(ctx, ctx.floor)


@scenario(
    "medplum-mix",
    group=RECORDS,
    title="FHIR mix as in Medplum's load test: create Patient, read it, search it",
    compare_to={"baseline-insert": 1, "baseline-read": 2},
    goal=Goal(text="none; Medplum publishes 6,738 req/s on 15 servers of 4 vCPU (≈ 112 req/s per vCPU), 167 ms average"),
)
async def medplum_mix(ctx: BenchContext) -> Workload:
    # Probe once so that a branch without the endpoints skips before the load.
    probe = await create_patient(ctx)
    expect(
        await ctx.call(ctx.gateway, "GET", f"/fhir/Patient/{probe.id}", headers=fhir_headers(ctx, probe.key)),
        {200},
        "GET /fhir/Patient/{id}",
    )
    expect(
        await ctx.call(ctx.gateway, "GET", f"/fhir/Patient?_id={probe.id}", headers=fhir_headers(ctx, probe.key)),
        {200},
        "GET /fhir/Patient?_id=",
    )
    template = dumps(patient("MARKER-PLACEHOLDER-0000000000000"))
    post_headers = fhir_headers(ctx, None, body=True)
    get_headers = fhir_headers(ctx)

    def make(worker: int) -> Operation:
        state: dict[str, Any] = {"step": 0, "id": "", "headers": get_headers}

        async def step(session: aiohttp.ClientSession) -> tuple[str, int]:
            if state["step"] == 0:
                key = patient_key()
                body = template.replace(b"MARKER-PLACEHOLDER-0000000000000", new_marker().encode())
                async with session.post("/fhir/Patient", data=body, headers={**post_headers, "x-patient-key": key}) as resp:
                    raw = await resp.read()
                    if resp.status == 201:
                        state.update(
                            step=1, id=created_id(resp.status, dict(resp.headers), raw), headers={**get_headers, "x-patient-key": key}
                        )
                    return "create Patient", resp.status
            if state["step"] == 1:
                state["step"] = 2
                async with session.get(f"/fhir/Patient/{state['id']}", headers=state["headers"]) as resp:
                    await resp.read()
                    return "read Patient by id", resp.status
            state["step"] = 0
            async with session.get("/fhir/Patient", params={"_id": state["id"]}, headers=state["headers"]) as resp:
                await resp.read()
                return "search Patient?_id", resp.status

        return step

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def per_core(stats: Stats) -> str:
        return (
            f"{stats.rate / cores:,.0f} req/s per core here (everything on {cores} cores) "
            "against Medplum's ≈ 112 per server vCPU (database and cache on machines of their own)"
        )

    return Workload(ctx.gateway, make, frozenset({200, 201}), note=per_core)


# --- ingest ---------------------------------------------------------------------------


@dataclass
class Bundle:
    name: str
    body: bytes
    resources: int


def _load_bundles(paths: list[Path]) -> list[Bundle]:
    """Prepared as tests/fhir_loader.py (the e2e loader) does it, as docs/fhir.md says:
    collection bundles become transactions of POSTs, directory copies become conditional
    creates; the order given (directory: smart transactions before fdp batches) is kept."""
    # Imported here: a change in the loader or records' helpers breaks this scenario only.
    from tests.fhir_loader import as_transaction

    bundles = []
    for path in paths:
        parsed = as_transaction(orjson.loads(path.read_bytes()))
        bundles.append(Bundle(path.name, orjson.dumps(parsed), len(parsed.get("entry", []))))
    return bundles


def _bundle_files(data: Path, smoke: bool) -> tuple[list[Path], list[Path]]:
    from tests.fhir_loader import directory_bundles, patient_bundles

    directory, patients = directory_bundles(data), patient_bundles(data)
    if smoke:  # the small directory pair and the smallest patient bundle
        directory = [p for p in directory if p.name.startswith("smart-")]
        patients = sorted((p for p in patients if p.name.startswith("smart__")), key=lambda p: p.stat().st_size)[:1]
    return directory, patients


@dataclass
class IngestRun:
    resources: int
    bundles_done: int
    errors: int
    elapsed: float
    latencies: list[float]
    notes: list[str]


async def _post_bundles(
    ctx: BenchContext, endpoint: Endpoint, path: str, bundles: list[Bundle], concurrency: int, deadline: float, patient_keys: bool
) -> IngestRun:
    queue = list(reversed(bundles))
    latencies: list[float] = []
    run = IngestRun(0, 0, 0, 0.0, latencies, [])
    started = time.perf_counter()

    async def worker() -> None:
        while queue and time.perf_counter() < deadline:
            bundle = queue.pop()
            headers = {"content-type": FHIR_JSON if endpoint is ctx.gateway else "application/json", **ctx.auth_headers}
            if endpoint is ctx.gateway:
                headers["accept"] = FHIR_JSON
            if patient_keys:
                headers["x-patient-key"] = patient_key()
            began = time.perf_counter()
            try:
                reply = await ctx.call(endpoint, "POST", path, body=bundle.body, headers=headers, timeout=120)
                status = reply.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, reply = 0, Reply(0, {}, type(exc).__name__.encode())
            latencies.append(time.perf_counter() - began)
            if status == 200:
                run.resources += bundle.resources
                run.bundles_done += 1
            else:
                run.errors += 1
                if len(run.notes) < 2:
                    run.notes.append(f"{bundle.name[:40]}: {status} {reply.body[:120]!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.elapsed = time.perf_counter() - started
    if queue:
        run.notes.append(f"time budget spent: {len(queue)} of {len(bundles)} bundles not sent")
    return run


def _measured(run: IngestRun, label: str, **extra: Any) -> Measured:
    ordered = sorted(run.latencies)
    note = "; ".join([f"{run.bundles_done} bundles, {run.resources:,} resources in {run.elapsed:.1f} s", *run.notes])
    return Measured(
        rate=run.resources / run.elapsed if run.elapsed > 0 else 0.0,
        unit="resources/s",
        p50_ms=percentile(ordered, 0.5) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        errors=run.errors,
        label=label,
        note=note,
        requests=run.resources,
        **extra,
    )


@scenario(
    "ingest",
    group=RECORDS,
    title="Ingest: Synthea dev set as transaction bundles (p50/p99 per bundle)",
    goal=Goal(min_rate=1000, text="HAPI FHIR users report ≈ 190/s"),
    timeout=300,
    unit="resources/s",
)
async def ingest(ctx: BenchContext) -> list[Measured]:
    if ctx.data_dir is None or not (ctx.data_dir / "fhir" / "dev").is_dir():
        raise Skip("test data not found (../shared/data/fhir)")
    empty = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []})
    ctx.require_endpoint(
        await ctx.call(ctx.gateway, "POST", INGEST_PATH, body=empty, headers={"content-type": FHIR_JSON, **ctx.auth_headers}), "POST /fhir"
    )
    directory_files, patient_files = _bundle_files(ctx.data_dir, ctx.smoke)
    directory, patients = _load_bundles(directory_files), _load_bundles(patient_files)
    budget = 20.0 if ctx.smoke else ctx.ingest_budget
    concurrency = ctx.ingest_concurrency

    # The plaintext counterpart first: the same patient bundles, same concurrency.
    await ctx.quiet()
    base = await _post_bundles(ctx, ctx.baseline, "/bundle", patients, concurrency, time.perf_counter() + budget, False)
    baseline_row = _measured(base, "Same patient bundles, one executemany INSERT each", group=BASELINE, baseline_name="baseline-ingest")

    await ctx.quiet()
    started = time.perf_counter()
    dir_run = await _post_bundles(ctx, ctx.gateway, INGEST_PATH, directory, 1, started + budget, False)
    before = ctx.meter.snapshot()
    patient_run = await _post_bundles(ctx, ctx.gateway, INGEST_PATH, patients, concurrency, started + budget, True)
    cpu = CpuMeter.usage(before, ctx.meter.snapshot())
    return [
        baseline_row,
        _measured(dir_run, "Ingest: directory bundles (Organization, Location, Practitioner…), one at a time", goal=Goal()),
        _measured(
            patient_run,
            f"Ingest: {len(patients)} Synthea patient bundles, {concurrency} at a time",
            baseline_rate=base.resources / base.elapsed if base.elapsed > 0 and base.resources else None,
            cpu=cpu,
        ),
    ]
