"""Cost of authentication on the hot path: ``python -m tests.bench_auth``.

Starts its own local mesh (SQLite, in-process caches) on a separate port range,
then reads one Observation through the gateway, in alternating rounds, with:
- the development token (no signature, no proof: the baseline);
- an OAuth2 access token bound with DPoP (a fresh proof per request: the gateway
  verifies token and proof and checks the jti, api verifies both again, checks
  revocation and authorizes the patient).
Proofs are made before each round, so the client's signing is not counted.
Rounds alternate (dev, auth, dev, auth, ...) so that both see the same machine:
on a shared machine throughput and latency move with the neighbours' load, so
the report also gives the CPU time each service spent per request (from
/proc, independent of how busy the machine is), which is the steadier figure.
Prints req/s, p50 and p99 of each, CPU ms per request per service, and the
overhead of each. ``BENCH_BACKEND=postgres`` runs it on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.auth.support import Session, admin_session, make_user, user_session
from tests.e2e.test_records import observation
from tests.support import RunningMesh, drop_databases, free_port_offset, new_patient_key, running_mesh

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PER_ROUND = int(os.environ.get("BENCH_REQUESTS", "300"))
BACKEND = os.environ.get("BENCH_BACKEND", "sqlite")
CONCURRENCY = 8
SERVICES = ("gateway", "api", "records")
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _run(client: httpx.AsyncClient, path: str, headers: list[dict[str, str]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(headers)

    async def worker() -> None:
        while queue:
            h = queue.pop()
            started = time.perf_counter()
            resp = await client.get(path, headers=h)
            latencies.append(time.perf_counter() - started)
            assert resp.status_code == 200, resp.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started, latencies


def _summary(elapsed: float, latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    return len(ordered) / elapsed, statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def bench(mesh: RunningMesh) -> str:
    await admin_session(mesh)
    user = await make_user(mesh, "demo", ["patient"])
    first = await user_session(mesh, "demo", user["username"], user["password"])
    key = new_patient_key()
    created = await first.request("POST", "/fhir/Patient", json={"resourceType": "Patient"}, headers={"x-patient-key": key})
    patient_id = created.json()["id"]
    # sign in again: the token now carries the patient context, as an app's would
    app: Session = await user_session(mesh, "demo", user["username"], user["password"])
    obs = await app.request("POST", "/fhir/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    path = f"/fhir/Observation/{obs.json()['id']}"
    common = {"x-patient-key": key, "accept": "application/fhir+json"}
    dev = {"authorization": f"Bearer {mesh.dev_token}"} | common
    # The dev token acts in the dev tenant: give it its own copy of the record.
    async with mesh.fhir() as fhir:
        dev_patient = (await fhir.post("/Patient", json={"resourceType": "Patient"}, headers={"x-patient-key": key})).json()["id"]
        dev_obs = (await fhir.post("/Observation", json=observation(dev_patient), headers={"x-patient-key": key})).json()["id"]
    dev_path = f"/fhir/Observation/{dev_obs}"
    results: dict[str, list[tuple[float, list[float]]]] = {"dev token": [], "token + DPoP": []}
    cpu: dict[str, dict[str, float]] = {name: dict.fromkeys(SERVICES, 0.0) for name in results}
    pids = {service: mesh.mesh.processes[service].pid for service in SERVICES}

    async def measured(name: str, target: str, headers: list[dict[str, str]]) -> None:
        before = {service: _cpu_seconds(pid) for service, pid in pids.items()}
        results[name].append(await _run(client, target, headers))
        for service, pid in pids.items():
            cpu[name][service] += _cpu_seconds(pid) - before[service]

    async with mesh.client(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        for _ in range(20):  # warm-up
            await client.get(dev_path, headers=dev)
            await client.get(path, headers=app.headers("GET", path) | common)
        for _ in range(ROUNDS):
            await measured("dev token", dev_path, [dev] * PER_ROUND)
            signed = [app.headers("GET", path) | common for _ in range(PER_ROUND)]
            await measured("token + DPoP", path, signed)
    load = os.getloadavg()[0]
    lines = [
        f"Observation read through the gateway, {ROUNDS} x {PER_ROUND} requests each, {CONCURRENCY} concurrent, "
        f"{BACKEND} mesh, rounds interleaved (load average at the end: {load:.1f} on {os.cpu_count()} CPUs)",
        "",
        "| authentication | req/s | p50 ms | p99 ms | " + " | ".join(f"{s} CPU ms/req" for s in SERVICES) + " | mesh CPU ms/req |",
        "|---|---|---|---|" + "---|" * (len(SERVICES) + 1),
    ]
    summary = {}
    total_cpu = {}
    count = ROUNDS * PER_ROUND
    for name, runs in results.items():
        elapsed = sum(e for e, _ in runs)
        latencies = [x for _, lat in runs for x in lat]
        summary[name] = _summary(elapsed, latencies)
        rps, p50, p99 = summary[name]
        per = {service: 1000 * cpu[name][service] / count for service in SERVICES}
        total_cpu[name] = sum(per.values())
        cells = " | ".join(f"{per[s]:.2f}" for s in SERVICES)
        lines.append(f"| {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {cells} | {total_cpu[name]:.2f} |")
    base, auth = summary["dev token"], summary["token + DPoP"]
    lines.append("")
    lines.append(
        f"overhead: throughput {100 * (base[0] - auth[0]) / base[0]:+.1f} %, p50 {100 * (auth[1] - base[1]) / base[1]:+.1f} %, "
        f"mesh CPU per request {100 * (total_cpu['token + DPoP'] - total_cpu['dev token']) / total_cpu['dev token']:+.1f} % (target <= 10 %)"
    )
    return "\n".join(lines)


def main() -> int:
    offset = free_port_offset()
    with tempfile.TemporaryDirectory() as tmp, running_mesh(Path(tmp) / "state", offset, BACKEND) as mesh:
        report = asyncio.run(bench(mesh))
    if BACKEND == "postgres":
        asyncio.run(drop_databases(f"cvtest{offset}"))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
