"""The benchmark harness behind ``make bench`` (``python -m tests.bench``).

It starts its own mesh on PostgreSQL and Redis (on free ports, databases
``cvbench<offset>_*``) and a plaintext baseline app (``baseline.py``, database
``cvbench<offset>_baseline``), drives each scenario with a bounded aiohttp load generator
(``loadgen.py``), and writes ``docs/benchmarks.md`` (``report.py``). Not part of
``make test``: nothing here asserts on time. ``--smoke`` checks that it works.

Modules: ``cli`` (options, the run), ``stack`` (processes up and always down),
``framework`` (scenario registry and runner), ``scenarios/`` (the scenarios),
``fhir`` (payloads), ``procstat`` (CPU per process), ``machine``, ``report``.

Adding a scenario
-----------------
Write an async function in a module of ``tests/bench/scenarios/`` and register it::

    from tests.bench.framework import RECORDS, BenchContext, Goal, Workload, scenario

    @scenario(
        "observation-update",                  # the name --only takes
        group=RECORDS,                         # the table it goes in
        title="Observation update (~1 KB)",
        compare_to="baseline-insert",          # ratio = its req/s / that baseline's
        goal=Goal(min_ratio=0.35, max_p99_ms=60),
    )
    async def observation_update(ctx: BenchContext) -> Workload:
        # Setup, not measured. A 404/405 skips: "not available yet: 404".
        reply = ctx.require_endpoint(await ctx.call(ctx.gateway, "POST", "/fhir/Patient", ...))
        body, headers = ..., {**ctx.auth_headers, "x-patient-key": key}

        async def update(session: aiohttp.ClientSession) -> int:
            async with session.put(f"/fhir/Observation/{oid}", data=body, headers=headers) as resp:
                await resp.read()
                return resp.status          # or ("label", status) to report kinds apart

        return Workload.same(ctx.gateway, update, expect=frozenset({200}))

Return ``Workload(endpoint, make_operation)`` when each worker needs its own state
(``make_operation(i)`` builds worker i's operation), or ``Measured`` figures for a
scenario that measures itself (see ``ingest`` in ``scenarios/records.py``). Raise
``Skip("why")`` when it cannot run. ``ctx.shared`` carries things between scenarios
(``records.worker_patients`` keeps one patient per worker there).
"""
