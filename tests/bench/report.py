"""docs/benchmarks.md: replaced whole on every run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tests.bench.framework import BASELINE, GROUP_ORDER, TIMES, Row
from tests.bench.loadgen import LoadSpec
from tests.bench.machine import Machine
from tests.bench.procstat import OTHER_PROCESSES

CPU_GROUPS = ("generator", "gateway", "api", "records", "keyservice", "fileservice", "baseline", "postgres", "redis", OTHER_PROCESSES)


@dataclass
class RunInfo:
    started: datetime
    command: str
    spec: LoadSpec
    ingest_concurrency: int
    smoke: bool
    only: list[str] | None
    wall_seconds: float
    peak_rss_mib: Mapping[str, float]
    mesh_env: Mapping[str, str]
    busy_before: float


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def _rate(row: Row) -> str:
    if row.rate is None:
        return "—"
    text = _num(row.rate, 0 if row.rate >= 100 else 1)
    return text if row.unit == "req/s" else f"{text} {row.unit}"


def _met(row: Row) -> str:
    return {True: "yes", False: "**no**", None: "—"}[row.met]


def _ratio(row: Row) -> str:
    if row.group == BASELINE and not row.sub:
        return "1.00 (reference)"
    return "—" if row.ratio is None else f"{row.ratio:.2f}{TIMES}"


def _scenario_table(rows: list[Row]) -> list[str]:
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | errors | ratio to baseline (req/s) | target (from the issues) | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        label = f"&nbsp;&nbsp;{row.label}" if row.sub else row.label
        if row.rate is None:
            lines.append(f"| {label} | {row.note} | | | | | {row.goal} | — |")
            continue
        errors = "—" if row.errors is None else str(row.errors)
        lines.append(
            f"| {label} | {_rate(row)} | {_num(row.p50_ms, 1)} | {_num(row.p99_ms, 1)} | {errors} | {_ratio(row)} | {row.goal} | {_met(row)} |"
        )
    notes = [f"- {row.label}: {row.note}" for row in rows if row.rate is not None and row.note]
    if notes:
        lines += ["", *notes]
    return lines


def _cpu_table(rows: list[Row]) -> list[str]:
    measured = [row for row in rows if row.cpu is not None and row.requests > 0]
    if not measured:
        return []
    header = " | ".join(CPU_GROUPS)
    lines = [
        "## Where the CPU went",
        "",
        "CPU time per answered request (per resource for ingest, per MiB moved for files), in milliseconds, by process, over each measured window "
        "(from /proc). System calls count in each process's time; `other processes` is everything else that ran meanwhile "
        "(on a shared machine, other people's work); `unattributed` is busy time charged to no process seen at both ends "
        "of the window (interrupts and softirq, where loopback TCP is processed, and processes that came and went). `busy` is the share of all cores in use; `gen.` the load generator's share of one core.",
        "",
        f"| scenario | busy | gen. | {header} | unattributed | total |",
        "|---|---:|---:|" + "---:|" * (len(CPU_GROUPS) + 2),
    ]
    for row in measured:
        assert row.cpu is not None
        per = 1000.0 / row.requests
        cells = [_num(row.cpu.groups.get(g, 0.0) * per, 2) for g in CPU_GROUPS]
        lines.append(
            f"| {row.label} | {row.cpu.machine_utilisation:.0%} | {row.cpu.share_of_one_core('generator'):.0%} | "
            + " | ".join(cells)
            + f" | {_num(row.cpu.unattributed * per, 2)} | {_num(row.cpu.machine_busy * per, 2)} |"
        )
    return lines


def _generator_summary(rows: list[Row]) -> str:
    shares = [
        (row.label, row.cpu.share_of_busy("generator"), row.cpu.share_of_one_core("generator")) for row in rows if row.cpu is not None
    ]
    if not shares:
        return "The load generator's CPU was not measured (no /proc)."
    low = min(shares, key=lambda s: s[1])
    high = max(shares, key=lambda s: s[1])
    text = (
        f"The load generator took between {low[1]:.0%} ({low[0]}) and {high[1]:.0%} ({high[0]}) of the CPU time used "
        f"during the measured windows (at most {max(s[2] for s in shares):.0%} of one core): CPU the services did not get."
    )
    others = [(row.label, row.cpu.share_of_busy(OTHER_PROCESSES)) for row in rows if row.cpu is not None]
    worst = max(others, key=lambda s: s[1])
    if worst[1] >= 0.05:
        text += (
            f" Other processes, not part of the benchmark, ran meanwhile: up to {worst[1]:.0%} of the CPU time used "
            f"({worst[0]}); the figures are lower than on an idle machine by about that much."
        )
    else:
        text += " Nothing else of note ran meanwhile (other processes: under 5 % of the CPU time used)."
    return text


def render(machine: Machine, info: RunInfo, rows: list[Row]) -> str:
    spec = info.spec
    kind = "a smoke run (1 s per scenario): the figures mean nothing" if info.smoke else "a full run"
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (the harness is `tests/bench/`); the whole file is replaced on every run.",
        "",
        f"- **Date:** {info.started:%Y-%m-%d %H:%M} UTC; {kind}, {info.wall_seconds:.0f} s in all; "
        f"the machine was {info.busy_before:.0%} busy in the second before it started",
        f"- **Command:** `{info.command}`" + (f" (only: {', '.join(info.only)})" if info.only else ""),
        f"- **Code:** {machine.commit}",
        f"- **Machine:** {machine.cpu_model}, {machine.cores} cores, {machine.memory_gib:.1f} GiB memory, {machine.kernel}",
        f"- **Software:** Python {machine.python}, PostgreSQL {machine.postgres}, Redis {machine.redis}; {machine.packages}",
        f"- **Load:** {spec.concurrency} concurrent workers of a closed-loop aiohttp client (keep-alive, one connection each), "
        f"{spec.duration:g} s measured after {spec.warmup:g} s of warm-up per scenario, at most {spec.max_requests:,} requests; "
        f"bundle ingest {info.ingest_concurrency} bundles at a time.",
        *(
            [f"- **Mesh settings changed for this run:** {', '.join(f'`{k}={v}`' for k, v in info.mesh_env.items())}"]
            if info.mesh_env
            else []
        ),
        "",
        "Everything runs on this one machine and shares its cores: the load generator (the harness process), the five "
        "services (one uvicorn worker each, TLS between them), the baseline, PostgreSQL and Redis. "
        + _generator_summary(rows)
        + " The baseline is one FastAPI app (uvicorn, uvloop, httptools, one worker) storing the same payload in plaintext "
        "with asyncpg over plain HTTP; every ratio divides a mesh figure by the baseline measured in the same run. "
        "The mesh runs on PostgreSQL with Redis for the gateway, as in the PostgreSQL end-to-end tests, with the gateway's "
        "per-client rate limit raised so that a loopback load is not answered 429 (its Redis round trip stays on the path), "
        "and on the chart's defaults otherwise (no span export). Before each measurement the harness runs VACUUM (ANALYZE) "
        "on the run's databases and a CHECKPOINT, so that the write-back and autovacuum left by one scenario's writes do "
        "not land in the next one's window (they did: PostgreSQL then cost a read up to 2 ms instead of 0.2). "
        "req/s counts successful answers only; p50 and p99 include every measured request.",
        "",
    ]
    groups = [g for g in GROUP_ORDER if any(r.group == g for r in rows)] + sorted({r.group for r in rows} - set(GROUP_ORDER))
    for group in groups:
        lines += [f"## {group}", "", *_scenario_table([r for r in rows if r.group == group]), ""]
    cpu = _cpu_table(rows)
    if cpu:
        lines += [*cpu, ""]
    if info.peak_rss_mib:
        lines += [
            "## Peak memory",
            "",
            "Peak resident set size (VmHWM) of each process over the whole run, in MiB:",
            "",
            "| " + " | ".join(info.peak_rss_mib) + " |",
            "|" + "---:|" * len(info.peak_rss_mib),
            "| " + " | ".join(f"{v:.0f}" for v in info.peak_rss_mib.values()) + " |",
            "",
        ]
    lines += [
        "## Running it",
        "",
        "`make bench` stands everything up, runs every scenario and stops every process it started (also on Ctrl-C or a "
        "failure). `.venv/bin/python -m tests.bench --only observation-read --duration 5` runs one scenario and the "
        "baselines it compares to (the report then goes to `.carevault/bench/benchmarks-partial.md`); `--smoke` checks "
        "the harness in a few seconds per scenario; `--profile DIR` samples each service with py-spy during each measured "
        "window; `--mesh-env NAME=VALUE` tries a service setting; `--list` names the scenarios. How to add one: "
        "`tests/bench/__init__.py`.",
        "",
    ]
    return "\n".join(lines)
