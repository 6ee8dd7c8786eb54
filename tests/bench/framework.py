"""Scenarios, their registry, and the runner that turns them into report rows.

A scenario is an async function registered with :func:`scenario`. It gets the
:class:`BenchContext` (where the gateway and the baseline are, the dev token,
the run's load settings), does its setup with :meth:`BenchContext.call`, and returns
either a :class:`Workload` (the runner drives the load and measures it) or one or
more :class:`Measured` (a scenario that measures itself, like bundle ingest).
Raising :class:`Skip` (or calling :meth:`BenchContext.require_endpoint`, which
raises :class:`NotAvailable` on 404) puts a "not available yet" line in the report
instead of numbers. See tests/bench/__init__.py for a complete example.
"""

from __future__ import annotations

import asyncio
import math
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.bench.loadgen import Endpoint, LoadResult, LoadSpec, Operation, Stats, run_load
from tests.bench.procstat import CpuMeter, CpuUsage

BASELINE = "Baseline: one FastAPI app, plaintext asyncpg, plain HTTP"
FOUNDATION = "Foundation (issue 2)"
RECORDS = "Patient records (issue 8)"
SIGN_IN = "Sign-in (issue 4)"
FILES = "Files (issue 5)"
GROUP_ORDER = (BASELINE, FOUNDATION, RECORDS, SIGN_IN, FILES)

# Statuses that mean "this endpoint is not there yet" on a branch that predates it.
NOT_THERE = frozenset({404, 405, 501})
TIMES = "\N{MULTIPLICATION SIGN}"


class Skip(Exception):
    """The scenario cannot run here; the reason goes in the report."""


class NotAvailable(Skip):
    def __init__(self, status: int, what: str = "") -> None:
        super().__init__(f"not available yet: {status}" + (f" ({what})" if what else ""))
        self.status = status


@dataclass(frozen=True)
class Goal:
    """A target from an issue. The checkable parts decide "met?"; ``text`` is shown
    as-is (for targets the harness cannot check, or to say where they come from)."""

    min_ratio: float | None = None
    max_p99_ms: float | None = None
    min_rate: float | None = None
    max_rate: float | None = None  # for figures where less is better (memory)
    text: str = ""

    def describe(self, unit: str) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f"≥ {self.min_ratio:g}{TIMES} baseline")
        if self.min_rate is not None:
            parts.append(f"≥ {self.min_rate:,.0f} {unit}")
        if self.max_rate is not None:
            parts.append(f"≤ {self.max_rate:,.0f} {unit}")
        if self.max_p99_ms is not None:
            parts.append(f"p99 ≤ {self.max_p99_ms:g} ms")
        if self.text:
            parts.append(self.text)
        return ", ".join(parts) or "—"

    @property
    def checkable(self) -> bool:
        return any(v is not None for v in (self.min_ratio, self.max_p99_ms, self.min_rate, self.max_rate))

    def met(self, rate: float, ratio: float | None, p99_ms: float) -> bool | None:
        if not self.checkable:
            return None
        checks = []
        if self.min_ratio is not None:
            checks.append(ratio is not None and ratio >= self.min_ratio)
        if self.min_rate is not None:
            checks.append(rate >= self.min_rate)
        if self.max_rate is not None:
            checks.append(rate <= self.max_rate)
        if self.max_p99_ms is not None:
            checks.append(not math.isnan(p99_ms) and p99_ms <= self.max_p99_ms)
        return all(checks)


@dataclass
class Workload:
    """A closed-loop load for the runner to drive: ``make_operation(i)`` builds
    worker i's operation (per-worker state such as its own patient goes there)."""

    endpoint: Endpoint
    make_operation: Callable[[int], Operation]
    expect: frozenset[int] = frozenset({200})
    concurrency: int | None = None
    # A line for the report computed from the result (e.g. a figure per core to compare with others').
    note: Callable[[Stats], str] | None = None

    @classmethod
    def same(cls, endpoint: Endpoint, operation: Operation, expect: frozenset[int] = frozenset({200})) -> Workload:
        return cls(endpoint, lambda _worker: operation, expect)


@dataclass
class Measured:
    """A figure a scenario measured itself."""

    rate: float
    unit: str = "req/s"
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    errors: int = 0
    label: str | None = None  # default: the scenario's title
    note: str = ""
    group: str | None = None  # default: the scenario's group
    baseline_rate: float | None = None  # the ratio's reference, when not the scenario's compare_to
    goal: Goal | None = None  # default: the scenario's goal
    cpu: CpuUsage | None = None
    requests: int = 0  # answered requests in the CPU window (for CPU ms per request)
    baseline_name: str | None = None  # register the rate as a baseline other scenarios compare to
    sub: bool = False  # a detail line under the previous row
    met: bool | None = None  # the scenario checked a goal the Goal cannot express (a figure against another of its own)


@dataclass
class Row:
    group: str
    label: str
    rate: float | None
    unit: str
    p50_ms: float
    p99_ms: float
    errors: int | None
    ratio: float | None
    goal: str
    met: bool | None
    note: str = ""
    cpu: CpuUsage | None = None
    requests: int = 0
    sub: bool = False


ScenarioResult = Workload | Measured | list[Measured]
ScenarioFn = Callable[["BenchContext"], Awaitable[ScenarioResult]]


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    title: str
    fn: ScenarioFn
    compare_to: str | Mapping[str, float] | None = None
    goal: Goal | None = None
    # Bound on the scenario function itself (its setup, or all of a self-measuring scenario).
    timeout: float = 120.0
    unit: str = "req/s"
    # False for a scenario too long for the ~5-minute default run: it then runs only when
    # named with --only, and the report says how to run it.
    in_default_run: bool = True

    @property
    def baselines(self) -> tuple[str, ...]:
        if self.compare_to is None:
            return ()
        if isinstance(self.compare_to, str):
            return (self.compare_to,)
        return tuple(self.compare_to)


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str,
    *,
    group: str,
    title: str,
    compare_to: str | Mapping[str, float] | None = None,
    goal: Goal | None = None,
    timeout: float = 120.0,
    unit: str = "req/s",
    in_default_run: bool = True,
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register a scenario under ``name`` (what ``--only`` takes). ``compare_to`` names
    the baseline scenario its req/s is divided by, or maps several to weights for a mix
    (the reference is then the weighted harmonic mean of their rates)."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        if name in REGISTRY:
            raise ValueError(f"scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, group, title, fn, compare_to, goal, timeout, unit, in_default_run)
        return fn

    return register


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class BenchContext:
    gateway: Endpoint
    baseline: Endpoint
    state_dir: Path
    data_dir: Path | None
    spec: LoadSpec
    meter: CpuMeter
    smoke: bool = False
    ingest_concurrency: int = 4
    ingest_budget: float = 120.0  # seconds for all the bundles of the ingest scenario
    baseline_rates: dict[str, float] = field(default_factory=dict)
    # For scenarios to leave things to later ones (ids created, keys, ...).
    shared: dict[str, Any] = field(default_factory=dict)
    # --profile: sample these processes with py-spy during each measured window.
    profile_dir: Path | None = None
    profile_pids: dict[str, int] = field(default_factory=dict)
    current: str = ""  # the scenario running now
    # Scenarios named with --only (those not in the default run run only then).
    named: frozenset[str] = frozenset()
    # Says which of the processes under test has died, if one has (checked between scenarios).
    casualty: Callable[[], str | None] = lambda: None
    # Called just before each measurement (``--wait-quiet``: let other work on a shared machine pass).
    settle: Callable[[], Awaitable[None]] | None = None
    # The running mesh (tests.support.RunningMesh): its seeded administrator lets a scenario
    # create users and sign them in (auth-overhead).
    mesh: Any = None
    # The floor chain's entry (stack.floor_chain): the baseline behind three empty hops.
    floor: Endpoint | None = None
    _sessions: dict[str, aiohttp.ClientSession] = field(default_factory=dict)

    @property
    def auth_headers(self) -> dict[str, str]:
        """The development bearer token of the mesh, when it has one (`<state_dir>/dev-token`).
        The sign-in issue replaces this with real tokens (and DPoP proofs)."""
        token_file = self.state_dir / "dev-token"
        if token_file.is_file():
            return {"authorization": "Bearer " + token_file.read_text(encoding="utf-8").strip()}
        return {}

    async def call(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        """One request for setup (not measured), on a small pooled session per endpoint."""
        session = self._sessions.get(endpoint.name)
        if session is None:
            session = self._sessions[endpoint.name] = endpoint.session(8, timeout)
        async with session.request(
            method, path, data=body, headers=dict(headers or {}), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    @staticmethod
    def require_endpoint(reply: Reply, what: str = "") -> Reply:
        """Skip the scenario when the endpoint does not exist yet on this branch."""
        if reply.status in NOT_THERE:
            raise NotAvailable(reply.status, what)
        return reply

    async def load(self, workload: Workload, *, duration: float | None = None) -> LoadResult:
        spec = self.spec
        if workload.concurrency is not None or duration is not None:
            spec = LoadSpec(
                concurrency=workload.concurrency or spec.concurrency,
                duration=duration if duration is not None else spec.duration,
                warmup=spec.warmup,
                max_requests=spec.max_requests,
                request_timeout=spec.request_timeout,
            )
        await self.quiet()
        profiler = None
        if self.profile_dir is not None:
            from tests.bench.profiling import record

            profiler = asyncio.create_task(record(self.profile_pids, self.profile_dir / self.current, spec.warmup, spec.duration))
        result = await run_load(workload.endpoint, workload.make_operation, spec, workload.expect, self.meter)
        if profiler is not None:
            await profiler
        return result

    async def quiet(self) -> None:
        """Wait for the machine to be quiet, if asked to (``--wait-quiet``); a scenario that
        measures itself calls this just before it starts timing."""
        if self.settle is not None:
            await self.settle()

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def _error_note(result: LoadResult) -> str:
    parts = [f"{kind} {TIMES}{count}" for kind, count in result.error_kinds.most_common(3)]
    if result.stopped_by_budget:
        parts.append("stopped by the request budget")
    return "; ".join(parts)


def measured_from_load(result: LoadResult, workload: Workload | None = None) -> list[Measured]:
    stats = result.stats
    notes = [workload.note(stats)] if workload is not None and workload.note is not None else []
    notes += [_error_note(result)] if result.error_kinds or result.stopped_by_budget else []
    rows = [
        Measured(
            rate=stats.rate,
            p50_ms=stats.p50_ms,
            p99_ms=stats.p99_ms,
            errors=stats.errors,
            note="; ".join(notes),
            cpu=result.cpu,
            requests=stats.count,
        )
    ]
    for label, label_stats in result.label_stats().items():
        rows.append(
            Measured(
                rate=label_stats.rate,
                p50_ms=label_stats.p50_ms,
                p99_ms=label_stats.p99_ms,
                errors=label_stats.errors,
                label=f"↳ {label}",
                goal=Goal(),
                sub=True,
            )
        )
    return rows


def _reference_rate(compare_to: str | Mapping[str, float] | None, rates: Mapping[str, float]) -> float | None:
    if compare_to is None:
        return None
    weights = {compare_to: 1.0} if isinstance(compare_to, str) else dict(compare_to)
    if any(rates.get(name, 0.0) <= 0 for name in weights):
        return None
    return sum(weights.values()) / sum(w / rates[name] for name, w in weights.items())


def _row(sc: Scenario, m: Measured, rates: Mapping[str, float]) -> Row:
    group = m.group or sc.group
    goal = m.goal if m.goal is not None else (sc.goal or Goal())
    if group == BASELINE:
        reference = m.rate if m.baseline_rate is None else m.baseline_rate
    elif m.baseline_rate is not None:
        reference = m.baseline_rate
    elif m.sub:
        reference = None
    else:
        reference = _reference_rate(sc.compare_to, rates)
    ratio = m.rate / reference if reference else None
    return Row(
        group=group,
        label=m.label or sc.title,
        rate=m.rate,
        unit=m.unit,
        p50_ms=m.p50_ms,
        p99_ms=m.p99_ms,
        errors=m.errors,
        ratio=ratio,
        goal=goal.describe(m.unit),
        met=m.met if m.met is not None else goal.met(m.rate, ratio, m.p99_ms),
        note=m.note,
        cpu=m.cpu,
        requests=m.requests,
        sub=m.sub,
    )


def _note_row(sc: Scenario, note: str) -> Row:
    goal = sc.goal or Goal()
    return Row(sc.group, sc.title, None, sc.unit, math.nan, math.nan, None, None, goal.describe(sc.unit), None, note)


def select(only: list[str] | None) -> list[Scenario]:
    """The scenarios to run, by group, with the baselines they compare to (and so first)."""
    if only:
        unknown = [name for name in only if name not in REGISTRY]
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
        wanted = set(only)
        for name in only:
            wanted.update(REGISTRY[name].baselines)
    else:
        wanted = set(REGISTRY)
    chosen = [sc for sc in REGISTRY.values() if sc.name in wanted]
    return sorted(chosen, key=lambda sc: GROUP_ORDER.index(sc.group) if sc.group in GROUP_ORDER else len(GROUP_ORDER))


async def run_scenarios(ctx: BenchContext, scenarios: list[Scenario], progress: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    for sc in scenarios:
        progress(f"{sc.name}: {sc.title}")
        ctx.current = sc.name
        if not sc.in_default_run and sc.name not in ctx.named:
            note = f"not in the default run: `.venv/bin/python -m tests.bench --only {sc.name}`"
            progress(f"  {note}")
            rows.append(_note_row(sc, note))
            continue
        dead = ctx.casualty()
        if dead is not None:
            progress(f"  not run: {dead}")
            rows.append(_note_row(sc, f"not run: {dead}"))
            continue
        try:
            outcome = await asyncio.wait_for(sc.fn(ctx), sc.timeout)
            if isinstance(outcome, Workload):
                measured = measured_from_load(await ctx.load(outcome), outcome)
            elif isinstance(outcome, Measured):
                measured = [outcome]
            else:
                measured = outcome
        except Skip as skip:
            progress(f"  skipped: {skip}")
            rows.append(_note_row(sc, str(skip)))
            continue
        except Exception as exc:  # one broken scenario must not cost the others their figures
            traceback.print_exc(file=sys.stderr)
            progress(f"  failed: {type(exc).__name__}: {exc}")
            rows.append(_note_row(sc, f"failed: {type(exc).__name__}: {str(exc)[:160]}"))
            continue
        for m in measured:
            if m.group is None and sc.group == BASELINE and not m.sub:
                ctx.baseline_rates.setdefault(sc.name, m.rate)
            if m.baseline_name is not None:
                ctx.baseline_rates[m.baseline_name] = m.rate
            row = _row(sc, m, ctx.baseline_rates)
            rows.append(row)
            if not row.sub:
                p99 = "n/a" if math.isnan(row.p99_ms) else f"{row.p99_ms:.1f} ms"
                ratio = f", {row.ratio:.2f}{TIMES} baseline" if row.ratio is not None and row.group != BASELINE else ""
                progress(f"  {row.label}: {row.rate:,.0f} {row.unit}, p99 {p99}, errors {row.errors}{ratio}")
    return rows
