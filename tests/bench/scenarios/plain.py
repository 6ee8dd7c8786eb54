"""The baselines every ratio is divided by: the same payloads, stored in plaintext by
one FastAPI app (tests/bench/baseline.py) in the same run."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.bench.fhir import created_id, dumps, observation
from tests.bench.framework import BASELINE, BenchContext, Workload, scenario
from tests.bench.loadgen import Endpoint, Operation

JSON_HEADERS = {"content-type": "application/json"}
READ_ROWS = 256


@scenario("baseline-insert", group=BASELINE, title="POST: one INSERT of the ~1 KB Observation")
async def baseline_insert(ctx: BenchContext) -> Workload:
    body = dumps(observation("0b7c2a53-5d0e-4a57-9d38-2f1d8c1d6a01"))

    async def insert(session: aiohttp.ClientSession) -> int:
        async with session.post("/r/Observation", data=body, headers=JSON_HEADERS) as resp:
            await resp.read()
            return resp.status

    return Workload.same(ctx.baseline, insert, frozenset({201}))


async def stored_reads(ctx: BenchContext, endpoint: Endpoint) -> Workload:
    """Reads by id, spread over the workers, of rows the baseline stored for this
    purpose; through ``endpoint`` (the baseline itself, or a chain in front of it)."""
    body = dumps(observation("0b7c2a53-5d0e-4a57-9d38-2f1d8c1d6a01"))
    replies = await asyncio.gather(
        *(ctx.call(ctx.baseline, "POST", "/r/Observation", body=body, headers=JSON_HEADERS) for _ in range(READ_ROWS))
    )
    paths = [f"/r/Observation/{created_id(r.status, dict(r.headers), r.body)}" for r in replies]

    def make(worker: int) -> Operation:
        mine = paths[worker % len(paths) :: max(1, ctx.spec.concurrency)] or paths
        position = 0

        async def read(session: aiohttp.ClientSession) -> int:
            nonlocal position
            path = mine[position % len(mine)]
            position += 1
            async with session.get(path) as resp:
                await resp.read()
                return resp.status

        return read

    return Workload(endpoint, make)


@scenario("baseline-read", group=BASELINE, title="GET: one SELECT by primary key of that Observation")
async def baseline_read(ctx: BenchContext) -> Workload:
    return await stored_reads(ctx, ctx.baseline)
