"""``python -m tests.bench`` (``make bench``): stand up the mesh and the baseline,
run the scenarios, write docs/benchmarks.md, take everything down."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import ssl
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvloop

from tests.bench import scenarios as _scenarios  # noqa: F401 - registers the scenarios
from tests.bench.framework import REGISTRY, BenchContext, Row, Scenario, run_scenarios, select
from tests.bench.loadgen import Endpoint, LoadSpec
from tests.bench.machine import describe
from tests.bench.procstat import CpuMeter, Snapshot, peak_rss_mib
from tests.bench.report import RunInfo, render
from tests.bench.stack import PORT_OFFSET, STATE_ROOT, Stack, bench_stack, settle_databases
from tests.support import REPO_ROOT

DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
PARTIAL_OUTPUT = STATE_ROOT / "benchmarks-partial.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Benchmark the mesh against a plaintext single-service baseline and write docs/benchmarks.md.",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per scenario (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent workers (default 32)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget per scenario (default 1,000,000)")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds before a request counts as an error (default 10)")
    parser.add_argument("--ingest-concurrency", type=int, default=4, help="bundles posted at once by the ingest scenario (default 4)")
    parser.add_argument("--ingest-budget", type=float, default=120.0, help="seconds for all ingest bundles (default 120)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help="run only this scenario (repeatable or comma-separated; the baselines it compares to run too)",
    )
    parser.add_argument("--smoke", action="store_true", help="1 s per scenario and a small ingest: checks that the harness works")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the report (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)} for a full run, "
        f"{PARTIAL_OUTPUT.relative_to(REPO_ROOT)} with --only or --smoke)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each service with py-spy during each measured window; stacks and a summary go to DIR/<scenario>/",
    )
    parser.add_argument(
        "--mesh-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable for the services, e.g. RECORDS_DATABASE_POOL_SIZE=20 (repeatable; shown in the report)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to this long for the machine to be under 20%% busy (for shared machines; default 0)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.only:
        args.only = [name.strip() for value in args.only for name in value.split(",") if name.strip()]
    if args.smoke:
        args.duration, args.warmup = 1.0, 0.5
    if args.concurrency < 1 or args.duration <= 0 or args.warmup < 0 or args.max_requests < 1:
        parser.error("--concurrency and --max-requests must be ≥ 1, --duration > 0, --warmup ≥ 0")
    if any("=" not in item for item in args.mesh_env):
        parser.error("--mesh-env takes NAME=VALUE")
    args.mesh_env = dict(item.split("=", 1) for item in args.mesh_env)
    if args.output is None:
        args.output = PARTIAL_OUTPUT if (args.only or args.smoke) else DEFAULT_OUTPUT
    return args


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def command_line(argv: list[str]) -> str:
    if not argv:
        return "make bench"
    python = Path(sys.executable)
    shown = str(python.relative_to(REPO_ROOT)) if python.is_relative_to(REPO_ROOT) else "python"
    return shlex.join([shown, "-m", "tests.bench", *argv])


async def _wait_quiet(limit: float, threshold: float = 0.20) -> None:
    """Wait (at most ``limit`` seconds) until a second passes with the machine under ``threshold`` busy."""
    meter, deadline = CpuMeter(), time.monotonic() + limit
    while True:
        start = meter.snapshot()
        await asyncio.sleep(1.0)
        busy = CpuMeter.usage(start, meter.snapshot()).machine_utilisation
        if busy < threshold:
            return
        if time.monotonic() > deadline:
            progress(f"  the machine is still {busy:.0%} busy after {limit:.0f} s; measuring anyway")
            return


def _casualty(stack: Stack) -> str | None:
    processes = {**stack.mesh.mesh.processes, "baseline": stack.baseline}
    processes |= {f"floor hop {hop}": proc for hop, proc in enumerate(stack.floor, start=1)}
    for name, proc in processes.items():
        code = proc.poll()
        if code is not None:
            how = f"signal {-code}" if code < 0 else f"code {code}"
            return f"{name} exited ({how}) during the run; see {STATE_ROOT.relative_to(REPO_ROOT)}/mesh/logs"
    return None


async def _run(stack: Stack, args: argparse.Namespace, chosen: list[Scenario]) -> list[Row]:
    meter = CpuMeter()
    meter.track("generator", os.getpid())
    for name, pid in stack.pids.items():
        # The floor chain's hops are reference apps, as the baseline: counted with it.
        meter.track("baseline" if name.startswith("floor-") else name, pid)
    data_dir = (REPO_ROOT / ".." / "shared" / "data").resolve()
    ctx = BenchContext(
        gateway=Endpoint("gateway", stack.mesh.layout.gateway_url, stack.mesh.ssl_context()),
        baseline=Endpoint("baseline", stack.baseline_url),
        state_dir=stack.mesh.state_dir,
        data_dir=data_dir if data_dir.is_dir() else None,
        spec=LoadSpec(
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
            max_requests=args.max_requests,
            request_timeout=args.request_timeout,
        ),
        meter=meter,
        smoke=args.smoke,
        ingest_concurrency=args.ingest_concurrency,
        ingest_budget=args.ingest_budget,
        profile_dir=args.profile.resolve() if args.profile else None,
        profile_pids={name: pid for name, pid in stack.pids.items() if name != "baseline" and not name.startswith("floor-")},
        named=frozenset(args.only or ()),
        mesh=stack.mesh,
        floor=Endpoint("floor", stack.floor_url, ssl.create_default_context(cafile=str(stack.mesh.state_dir / "ca.pem"))),
    )
    ctx.casualty = lambda: _casualty(stack)

    async def settle() -> None:
        await settle_databases()
        if args.wait_quiet > 0:
            await _wait_quiet(args.wait_quiet)

    ctx.settle = settle
    try:
        return await run_scenarios(ctx, chosen, progress)
    finally:
        await ctx.close()


def _one_second_of_cpu() -> tuple[Snapshot, Snapshot]:
    meter = CpuMeter()
    start = meter.snapshot()
    time.sleep(1.0)
    return start, meter.snapshot()


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)
    if args.list:
        for sc in REGISTRY.values():
            print(f"{sc.name:22} {sc.group}: {sc.title}")
        return 0
    chosen = select(args.only)
    started, clock = datetime.now(UTC), time.monotonic()
    machine = asyncio.run(describe())
    before = CpuMeter.usage(*_one_second_of_cpu())
    if before.machine_utilisation > 0.25:
        progress(f"the machine is already {before.machine_utilisation:.0%} busy: the figures will be lower than on an idle machine")
    progress(f"starting the mesh (PostgreSQL + Redis, port offset {PORT_OFFSET}) and the baseline; {len(chosen)} scenario(s)")
    try:
        with bench_stack(args.mesh_env) as stack:
            progress(f"ready in {time.monotonic() - clock:.0f} s: gateway {stack.mesh.layout.gateway_url}, baseline {stack.baseline_url}")
            rows = uvloop.run(_run(stack, args, chosen))
            peaks = {name: peak_rss_mib(pid) for name, pid in stack.pids.items()}
            progress("stopping every process")
    except KeyboardInterrupt:
        progress("interrupted: every process this run started has been stopped; no report written")
        return 130
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # tests.support's "PostgreSQL/Redis missing"
        progress(f"cannot run: {exc}")
        return 2
    info = RunInfo(
        started=started,
        command=command_line(raw_argv),
        spec=LoadSpec(args.concurrency, args.duration, args.warmup, args.max_requests, args.request_timeout),
        ingest_concurrency=args.ingest_concurrency,
        smoke=args.smoke,
        only=args.only,
        wall_seconds=time.monotonic() - clock,
        mesh_env=args.mesh_env,
        busy_before=before.machine_utilisation,
        peak_rss_mib={name: value for name, value in peaks.items() if value is not None},
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(machine, info, rows), encoding="utf-8")
    progress(f"wrote {args.output} in {info.wall_seconds:.0f} s")
    return 0
