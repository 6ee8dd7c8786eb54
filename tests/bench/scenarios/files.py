"""Issue 5: files (FHIR Binary) through the whole mesh.

``files-1gib`` measures itself: one patient, then 1 GiB uploaded with
``POST /fhir/Binary`` (streamed, chunked) and downloaded with ``GET /fhir/Binary/{id}``
(streamed, every byte counted and the first ones checked), each through
gateway (TLS) → api (mTLS) → fileservice (mTLS, streaming AES-256-GCM, blob store).

* **MB/s** is 10^6 bytes per second of wall time, each way.
* **The reference** is AES-256-GCM sealing the same bytes in 1 MiB chunks on one core
  of the harness process, measured in the same run just before the transfers
  (``carevault_crypto.measure``): the cost of the cipher alone, with no I/O.
  It sits in the baseline table; both transfer rows are divided by it.
* **Peak RSS** of each service is sampled from /proc every 20 ms during each transfer.
* **CPU** in "Where the CPU went" is per MiB moved (not per request).

Reading it: each byte crosses three TLS connections (client→gateway, gateway→api,
api→fileservice), each decrypting and re-encrypting it, plus the streaming AEAD and
the blob store, all in Python processes that share the machine's cores with the
client (this harness, which also does TLS). The wall-clock rates are what the
machine gave this run; the CPU seconds per MiB, and the busiest process's share,
say more about where a deployment (one service per core or more) would be bound.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from carevault_crypto.measure import aes256gcm_seconds
from tests.bench.framework import BASELINE, FILES, BenchContext, Goal, Measured, Skip, scenario
from tests.bench.procstat import CpuMeter, peak_rss_mib
from tests.bench.scenarios.records import create_patient

MIB = 1024 * 1024
SERVICES = ("gateway", "api", "records", "fileservice", "keyservice")
MAX_RSS_MIB = 128.0
MIN_RATIO = 0.25
RSS_INTERVAL = 0.02
BASELINE_NAME = "aes-256-gcm-one-core"


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class RssPeaks:
    """Peak VmRSS of each process over a window, sampled by a thread."""

    pids: dict[str, int]
    peaks: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def sampling(self) -> Iterator[dict[str, float]]:
        self.peaks = {name: _rss_mib(pid) for name, pid in self.pids.items()}
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                for name, pid in self.pids.items():
                    self.peaks[name] = max(self.peaks[name], _rss_mib(pid))
                stop.wait(RSS_INTERVAL)

        thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield self.peaks
        finally:
            stop.set()
            thread.join()


def _block(i: int, base: bytes) -> bytes:
    """1 MiB of incompressible bytes, different for every i."""
    return i.to_bytes(8, "big") + base[8:]


def _service_pids(ctx: BenchContext) -> dict[str, int]:
    by_group = {group: pid for pid, group in ctx.meter.named.items()}
    return {name: by_group[name] for name in SERVICES if name in by_group}


async def _profiled(ctx: BenchContext, label: str, seconds: float) -> asyncio.Task[None] | None:
    """--profile: py-spy on every service for (about) the transfer's first ``seconds``."""
    if ctx.profile_dir is None:
        return None
    from tests.bench.profiling import record

    return asyncio.create_task(record(ctx.profile_pids, ctx.profile_dir / f"{ctx.current}-{label}", 0.0, seconds))


def _memory_note(peaks: dict[str, float]) -> str:
    return "peak RSS (MiB): " + ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())


@scenario(
    "files-1gib",
    group=FILES,
    title="1 GiB upload and download through the mesh (MB/s; peak RSS per service)",
    goal=Goal(min_ratio=MIN_RATIO, text=f"peak RSS ≤ {MAX_RSS_MIB:.0f} MiB per service"),
    timeout=600,
    unit="MB/s",
)
async def files_1gib(ctx: BenchContext) -> list[Measured]:
    size_mib = 32 if ctx.smoke else int(os.environ.get("CAREVAULT_BENCH_FILE_MIB", "1024"))
    size = size_mib * MIB
    owner = await create_patient(ctx)
    probe = await ctx.call(ctx.gateway, "GET", "/fhir/Binary?_id=none", headers={**ctx.auth_headers, "x-patient-key": owner.key})
    ctx.require_endpoint(probe, "GET /fhir/Binary")
    base = os.urandom(MIB)
    pids = _service_pids(ctx)
    rss = RssPeaks(pids)

    # The reference first, in this process, on one core (best of two).
    await ctx.quiet()
    aes_seconds = min(aes256gcm_seconds(_block(i, base) for i in range(size_mib)) for _ in range(2))
    aes_rate = size / aes_seconds / 1e6

    session = ctx.gateway.session(1, 3600)
    common = {**ctx.auth_headers, "x-patient-key": owner.key}
    try:
        await ctx.quiet()

        async def body() -> AsyncIterator[bytes]:
            for i in range(size_mib):
                yield _block(i, base)

        estimate = max(3.0, size / 150e6)
        profiler = await _profiled(ctx, "upload", estimate)
        headers = {**common, "content-type": "application/octet-stream", "x-security-context": f"Patient/{owner.id}"}
        before = ctx.meter.snapshot()
        with rss.sampling() as up_peaks:
            started = time.perf_counter()
            async with session.post("/fhir/Binary", data=body(), headers=headers) as resp:
                answer = await resp.read()
            up_seconds = time.perf_counter() - started
        up_cpu = CpuMeter.usage(before, ctx.meter.snapshot())
        up_peaks = dict(up_peaks)
        if profiler is not None:
            await profiler
        if resp.status != 201:
            raise Skip(f"upload answered {resp.status}: {answer[:200]!r}")
        binary_id = resp.headers["location"].split("/")[1]

        await ctx.quiet()
        profiler = await _profiled(ctx, "download", estimate)
        received, first = 0, b""
        before = ctx.meter.snapshot()
        with rss.sampling() as down_peaks:
            started = time.perf_counter()
            async with session.get(f"/fhir/Binary/{binary_id}", headers={**common, "accept": "*/*"}) as resp:
                status = resp.status
                async for part in resp.content.iter_any():
                    if not first:
                        first = part[:64]
                    received += len(part)
            down_seconds = time.perf_counter() - started
        down_cpu = CpuMeter.usage(before, ctx.meter.snapshot())
        down_peaks = dict(down_peaks)
        if profiler is not None:
            await profiler
        if status != 200 or received != size or first != _block(0, base)[: len(first)]:
            raise Skip(f"download answered {status} with {received} of {size} bytes")
        # Not kept: a later run on the same stack starts from the same disk.
        await ctx.call(ctx.gateway, "DELETE", f"/fhir/Binary/{binary_id}", headers=common)
    finally:
        await session.close()

    hwm = {name: peak_rss_mib(pid) for name, pid in pids.items()}
    worst = max([*up_peaks.values(), *down_peaks.values()], default=0.0)
    wall = f"{size_mib} MiB"
    rows = [
        Measured(
            rate=aes_rate,
            unit="MB/s",
            label=f"AES-256-GCM sealing the same {wall} in 1 MiB chunks, one core, in the harness (carevault_crypto.measure)",
            group=BASELINE,
            baseline_name=BASELINE_NAME,
            goal=Goal(),
            note=f"{aes_seconds:.2f} s",
        ),
        Measured(
            rate=size / up_seconds / 1e6,
            unit="MB/s",
            label=f"Upload {wall}: POST /fhir/Binary, streamed",
            baseline_rate=aes_rate,
            note=f"{up_seconds:.1f} s; {_memory_note(up_peaks)}",
            cpu=up_cpu,
            requests=size_mib,
        ),
        Measured(
            rate=size / down_seconds / 1e6,
            unit="MB/s",
            label=f"Download {wall}: GET /fhir/Binary/{{id}}, streamed",
            baseline_rate=aes_rate,
            note=f"{down_seconds:.1f} s; {_memory_note(down_peaks)}",
            cpu=down_cpu,
            requests=size_mib,
        ),
        Measured(
            rate=worst,
            unit="MiB",
            label="Peak RSS of the largest service during the transfers",
            goal=Goal(max_rate=MAX_RSS_MIB, text="each service"),
            note="VmHWM since each service started (MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in hwm.items() if v is not None),
        ),
    ]
    return rows
