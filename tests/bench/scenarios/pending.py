"""Benchmarks the issues ask for whose features do not exist yet: each keeps its place
(and its target) in the report until the engineer of that issue writes it here."""

from __future__ import annotations

from tests.bench.framework import FILES, BenchContext, Goal, Measured, Skip, scenario


@scenario(
    "files-1gib",
    group=FILES,
    title="1 GiB upload and download through the mesh (MB/s; peak RSS per service)",
    goal=Goal(text="≥ 0.25 times single-core AES-256-GCM of the same bytes; peak RSS ≤ 128 MiB per service"),
)
async def files_1gib(ctx: BenchContext) -> Measured:
    raise Skip("measured apart for now: `python -m tests.bench_files`, figures in docs/benchmarks-files.md")
