"""A bounded closed-loop load generator on aiohttp.

A fixed number of workers each send one request, wait for the answer, and send
the next, until the time is up or the request budget is spent: bounded in count
and in time. Requests that start during the warm-up are not measured. Connections
are pooled and kept alive (one per worker); scenarios build their payloads and
headers before the run, so the generator's own CPU stays small and is measured.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from tests.bench.procstat import CpuMeter, CpuUsage

# One request: send it, read the whole answer, return its status, or (label, status)
# when a workload mixes several kinds of request and wants them reported apart.
Operation = Callable[[aiohttp.ClientSession], Awaitable["int | tuple[str, int]"]]


@dataclass(frozen=True)
class Endpoint:
    """Where the requests go: a base URL and, for HTTPS, the context trusting its CA."""

    name: str
    base_url: str
    ssl_context: ssl.SSLContext | None = None

    def session(self, connections: int, timeout: float) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=connections, ssl=self.ssl_context if self.ssl_context is not None else False, keepalive_timeout=60, ttl_dns_cache=None
        )
        return aiohttp.ClientSession(
            base_url=self.base_url,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0)),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )


@dataclass
class LoadSpec:
    concurrency: int
    duration: float
    warmup: float
    max_requests: int
    request_timeout: float = 10.0


@dataclass
class Stats:
    count: int
    errors: int
    rate: float
    p50_ms: float
    p99_ms: float


@dataclass
class LoadResult:
    """What a run measured, after the warm-up only."""

    window: float
    latencies: list[float]
    errors: int
    by_label: dict[str, tuple[list[float], int]]
    error_kinds: Counter[str] = field(default_factory=Counter)
    cpu: CpuUsage | None = None
    stopped_by_budget: bool = False

    @property
    def stats(self) -> Stats:
        return summarise(self.latencies, self.errors, self.window)

    def label_stats(self) -> dict[str, Stats]:
        return {label: summarise(lat, errors, self.window) for label, (lat, errors) in sorted(self.by_label.items())}


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(latencies: list[float], errors: int, window: float) -> Stats:
    ordered = sorted(latencies)
    ok = len(ordered) - errors
    return Stats(
        count=len(ordered),
        errors=errors,
        rate=ok / window if window > 0 else 0.0,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
    )


async def run_load(
    endpoint: Endpoint,
    make_operation: Callable[[int], Operation],
    spec: LoadSpec,
    expect: frozenset[int],
    meter: CpuMeter | None = None,
) -> LoadResult:
    """Drive ``spec.concurrency`` workers against ``endpoint``. Requests/s counts only
    successful answers (status in ``expect``); latencies include the failures."""
    latencies: list[float] = []
    by_label: dict[str, tuple[list[float], int]] = {}
    error_kinds: Counter[str] = Counter()
    errors = 0
    issued = 0
    budget_hit = False
    operations = [make_operation(i) for i in range(spec.concurrency)]
    perf = time.perf_counter
    async with endpoint.session(spec.concurrency, spec.request_timeout) as session:
        start = perf()
        measure_from = start + spec.warmup
        stop_at = measure_from + spec.duration
        snapshots = []

        async def take_snapshot_at_warmup_end() -> None:
            await asyncio.sleep(max(0.0, measure_from - perf()))
            if meter is not None:
                snapshots.append(meter.snapshot())

        async def worker(operation: Operation) -> None:
            nonlocal errors, issued, budget_hit
            while True:
                began = perf()
                if began >= stop_at:
                    return
                if issued >= spec.max_requests:
                    budget_hit = True
                    return
                issued += 1
                label = ""
                try:
                    outcome = await operation(session)
                    if isinstance(outcome, tuple):
                        label, status = outcome
                    else:
                        status = outcome
                    failed = status not in expect
                    if failed:
                        error_kinds[f"HTTP {status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failed = True
                    error_kinds[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)  # a refused connection fails at once: no busy loop
                except Exception as exc:  # a scenario bug: count it, keep the run bounded
                    failed = True
                    error_kinds[f"{type(exc).__name__} (in the scenario)"] += 1
                    await asyncio.sleep(0.01)
                if began < measure_from:
                    continue
                elapsed = perf() - began
                latencies.append(elapsed)
                if failed:
                    errors += 1
                if label:
                    values, label_errors = by_label.get(label, ([], 0))
                    values.append(elapsed)
                    by_label[label] = (values, label_errors + int(failed))

        snapper = asyncio.create_task(take_snapshot_at_warmup_end())
        workers = [asyncio.create_task(worker(op)) for op in operations]
        hard_limit = spec.warmup + spec.duration + spec.request_timeout + 5
        try:
            await asyncio.wait(workers, timeout=hard_limit)
        finally:
            for task in [snapper, *workers]:
                task.cancel()
            await asyncio.gather(snapper, *workers, return_exceptions=True)
        ended = perf()
        cpu = None
        if meter is not None and snapshots:
            cpu = CpuMeter.usage(snapshots[0], meter.snapshot())
    return LoadResult(
        window=max(0.0, ended - measure_from),
        latencies=latencies,
        errors=errors,
        by_label=by_label,
        error_kinds=error_kinds,
        cpu=cpu,
        stopped_by_budget=budget_hit,
    )
