"""Benchmarks the issues ask for whose features do not exist yet: each keeps its place
(and its target) in the report until the engineer of that issue writes it here."""

from __future__ import annotations

from tests.bench.framework import SIGN_IN, BenchContext, Goal, Measured, Skip, scenario


@scenario(
    "auth-overhead",
    group=SIGN_IN,
    title="Observation read with token + DPoP checks vs without",
    goal=Goal(text="overhead ≤ 10 %"),
)
async def auth_overhead(ctx: BenchContext) -> Measured:
    ctx.require_endpoint(await ctx.call(ctx.gateway, "GET", "/.well-known/openid-configuration"), "GET /.well-known/openid-configuration")
    raise Skip("no scenario yet (added with issue 4)")
