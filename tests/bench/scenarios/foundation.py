"""Issue 2: the walking skeleton under load."""

from __future__ import annotations

import aiohttp

from tests.bench.framework import FOUNDATION, BenchContext, Goal, Workload, scenario


@scenario(
    "healthz",
    group=FOUNDATION,
    title="GET /healthz through the gateway (TLS; api, records, keyservice, fileservice readiness)",
    compare_to="baseline-read",
    goal=Goal(text="none set in the issue"),
)
async def healthz(ctx: BenchContext) -> Workload:
    ctx.require_endpoint(await ctx.call(ctx.gateway, "GET", "/healthz"), "GET /healthz")

    async def get(session: aiohttp.ClientSession) -> int:
        async with session.get("/healthz") as resp:
            await resp.read()
            return resp.status

    return Workload.same(ctx.gateway, get)
