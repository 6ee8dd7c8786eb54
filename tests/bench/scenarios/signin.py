"""Issue 4: what authentication costs on the hot path.

One Observation read through the gateway, measured twice in the same run, in
alternating rounds (dev, auth, dev, auth) so that both see the same machine:

- with the development bearer token: no signature, no proof (api compares it
  with its file); the reference;
- with an OAuth2 access token bound to the app's key by DPoP, a fresh proof per
  request: the gateway verifies the token and the proof and claims the proof's
  ``jti`` in Redis, api verifies both again, checks revocation, and authorizes
  the patient (consent, compartment) from the token.

The proofs are signed before each round (not in the measured window), with an
``iat`` in the middle of the round, so that the load generator's signing is not
counted. The report gives both rows, the throughput ratio, and the CPU each side
spent per request in the services (gateway, api, records, keyservice, fileservice),
which moves less with the neighbours' load than req/s does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import aiohttp

from tests.bench.fhir import FHIR_JSON, dumps, observation, patient_key
from tests.bench.framework import SIGN_IN, BenchContext, Goal, Measured, Skip, Workload, scenario
from tests.bench.loadgen import LoadResult, Operation, percentile
from tests.bench.procstat import CpuUsage

ROUNDS = 2
#: The mesh's own processes. PostgreSQL and Redis are left out of this sum: on a shared
#: machine they also serve other work (their per-process figures are in the CPU table).
SERVICES = ("gateway", "api", "records", "keyservice", "fileservice")
GOAL = Goal(min_ratio=0.90, text="overhead ≤ 10 %")


def _merge(results: list[LoadResult]) -> tuple[float, list[float], int, CpuUsage | None]:
    window = sum(r.window for r in results)
    latencies = sorted(x for r in results for x in r.latencies)
    errors = sum(r.errors for r in results)
    usages = [r.cpu for r in results if r.cpu is not None]
    cpu = None
    if usages:
        groups: dict[str, float] = {}
        for usage in usages:
            for name, seconds in usage.groups.items():
                groups[name] = groups.get(name, 0.0) + seconds
        cpu = CpuUsage(sum(u.wall for u in usages), groups, sum(u.machine_busy for u in usages), usages[0].cores)
    return window, latencies, errors, cpu


def _measured(label: str, results: list[LoadResult], **extra: Any) -> Measured:
    window, latencies, errors, cpu = _merge(results)
    ok = len(latencies) - errors
    return Measured(
        rate=ok / window if window > 0 else 0.0,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=errors,
        label=label,
        cpu=cpu,
        requests=len(latencies),
        **extra,
    )


def cpu_ms(m: Measured, names: tuple[str, ...] = SERVICES) -> float:
    """CPU milliseconds per request of these processes."""
    if m.cpu is None or not m.requests:
        return float("nan")
    return 1000 * sum(m.cpu.groups.get(name, 0.0) for name in names) / m.requests


class ProofPool:
    """DPoP proofs signed ahead of a round (the client's signing is not what we measure)."""

    def __init__(self, session: Any, path: str) -> None:
        self.session, self.path, self.proofs = session, path, deque[dict[str, str]]()

    def fill(self, count: int, iat: int) -> None:
        self.proofs.clear()
        self.proofs.extend(self._headers(iat) for _ in range(count))

    def _headers(self, iat: int | None = None) -> dict[str, str]:
        assert self.session.dpop is not None
        url = self.session.mesh.layout.gateway_url + self.path
        return {
            "authorization": f"DPoP {self.session.token}",
            "dpop": self.session.dpop.proof("GET", url, self.session.token, iat=iat),
        }

    def next(self) -> dict[str, str]:
        return self.proofs.popleft() if self.proofs else self._headers()  # ran out: sign one now


async def _sign_in(ctx: BenchContext) -> tuple[Any, str, str]:
    """A patient user of the demo tenant, signed in through the app flow (authorization code +
    PKCE + DPoP), with their record and one Observation: (session, observation path, key)."""
    mesh = ctx.mesh
    if mesh is None or not mesh.seed_output:
        raise Skip("no seeded administrator in this mesh (needed to create a patient user)")
    from tests.auth.support import admin_session, make_user, user_session

    await admin_session(mesh)
    user = await make_user(mesh, "demo", ["patient"])
    first = await user_session(mesh, "demo", user["username"], user["password"])
    key = patient_key()
    created = await first.request("POST", "/fhir/Patient", json={"resourceType": "Patient"}, headers={"x-patient-key": key})
    if created.status_code != 201:
        raise Skip(f"POST /fhir/Patient as a patient user answered {created.status_code}")
    patient_id = created.json()["id"]
    # Signed in again: the token now carries the patient context, as an app's would.
    app = await user_session(mesh, "demo", user["username"], user["password"])
    obs = await app.request("POST", "/fhir/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    if obs.status_code != 201:
        raise Skip(f"POST /fhir/Observation as a patient user answered {obs.status_code}")
    return app, f"/fhir/Observation/{obs.json()['id']}", key


async def _dev_observation(ctx: BenchContext, key: str) -> str:
    """The same record in the dev tenant, where the development token acts."""
    headers = {"accept": FHIR_JSON, "content-type": FHIR_JSON, "x-patient-key": key, **ctx.auth_headers}
    patient = await ctx.call(ctx.gateway, "POST", "/fhir/Patient", body=dumps({"resourceType": "Patient"}), headers=headers)
    if patient.status != 201:
        raise Skip(f"POST /fhir/Patient with the dev token answered {patient.status}")
    obs = await ctx.call(ctx.gateway, "POST", "/fhir/Observation", body=dumps(observation(patient.json()["id"])), headers=headers)
    if obs.status != 201:
        raise Skip(f"POST /fhir/Observation with the dev token answered {obs.status}")
    return f"/fhir/Observation/{obs.json()['id']}"


@scenario("auth-overhead", group=SIGN_IN, title="Observation read with token + DPoP checks vs the dev token (same run)", goal=GOAL)
async def auth_overhead(ctx: BenchContext) -> list[Measured]:
    ctx.require_endpoint(await ctx.call(ctx.gateway, "GET", "/.well-known/openid-configuration"), "GET /.well-known/openid-configuration")
    if not ctx.auth_headers:
        raise Skip("no development token in this mesh (the reference side)")
    app, path, key = await _sign_in(ctx)
    dev_path = await _dev_observation(ctx, key)
    common = {"accept": FHIR_JSON, "x-patient-key": key}
    dev_headers = common | ctx.auth_headers
    pool = ProofPool(app, path)

    async def dev_read(session: aiohttp.ClientSession) -> int:
        async with session.get(dev_path, headers=dev_headers) as resp:
            await resp.read()
            return resp.status

    async def auth_read(session: aiohttp.ClientSession) -> int:
        async with session.get(path, headers=common | pool.next()) as resp:
            await resp.read()
            return resp.status

    duration = max(1.0, ctx.spec.duration / ROUNDS)
    span = ctx.spec.warmup + duration
    if span > 100:
        raise Skip("a round must last under 100 s (a DPoP proof is accepted 60 s around its iat)")
    dev_results: list[LoadResult] = []
    auth_results: list[LoadResult] = []
    expected = 500.0
    for _ in range(ROUNDS):
        dev_results.append(await ctx.load(Workload.same(ctx.gateway, dev_read), duration=duration))
        expected = max(expected, dev_results[-1].stats.rate)
        # Enough proofs for the round at the reference's pace (and then some), valid throughout.
        pool.fill(int(expected * span * 1.3) + ctx.spec.concurrency, int(time.time() + span / 2))
        await asyncio.sleep(0)
        operation: Operation = auth_read
        auth_results.append(await ctx.load(Workload.same(ctx.gateway, operation), duration=duration))
    dev = _measured("↳ the same read with the development token (reference: no signature, no proof)", dev_results, goal=Goal(), sub=True)
    auth = _measured("Observation read, access token + DPoP proof (gateway and api both verify)", auth_results, baseline_rate=dev.rate)
    dev_cpu, auth_cpu = cpu_ms(dev), cpu_ms(auth)
    throughput = 100 * (dev.rate - auth.rate) / dev.rate if dev.rate else float("nan")
    cpu_overhead = 100 * (auth_cpu - dev_cpu) / dev_cpu if dev_cpu else float("nan")
    checks = {name: cpu_ms(auth, (name,)) - cpu_ms(dev, (name,)) for name in ("gateway", "api")}
    auth.note = (
        f"overhead: throughput {throughput:+.1f} %, p50 {auth.p50_ms - dev.p50_ms:+.2f} ms, "
        f"services' CPU (gateway, api, records, keyservice, fileservice) {auth_cpu:.2f} vs {dev_cpu:.2f} ms/request "
        f"({cpu_overhead:+.1f} %), of which gateway {checks['gateway']:+.2f} ms and api {checks['api']:+.2f} ms; "
        f"{ROUNDS} alternating rounds of each"
    )
    return [auth, dev]
