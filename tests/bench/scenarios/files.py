"""Issue 5: files (FHIR Binary) through the whole mesh.

``files-1gib`` measures itself: one patient, then 1 GiB uploaded with
``POST /fhir/Binary`` (streamed, with its Content-Length, as a file upload is) and
downloaded with ``GET /fhir/Binary/{id}`` (streamed, every byte counted and the first
ones checked), each through gateway (TLS) → api (mTLS) → fileservice (mTLS,
streaming AES-256-GCM, blob store).

* **MB/s** is 10^6 bytes per second of wall time, each way.
* **The reference** is single-core AES-256-GCM encryption of the same bytes, in the
  harness process, in the same run just before the transfers (best of two): the
  streaming AEAD exactly as fileservice runs it (``StreamingEncryptor``, 64 KiB
  segments). The cipher alone in 1 MiB calls (``carevault_crypto.measure``) is
  shown beside it: the per-segment work makes the difference.
* **Blob store**: fileservice's directory is on a tmpfs when the machine has one
  (tests/bench/stack.py), so the figures are the mesh's and not this machine's
  disk; the disk is measured apart (the same bytes written and fsynced), because
  an upload to a local directory cannot be faster than it.
* **Peak RSS** of each service is sampled from /proc every 20 ms during each
  transfer (and its value just before the transfer is given).
* **CPU** in "Where the CPU went" is per MiB moved (not per request).
* **The floor**: the same bytes up and down through three empty hops (the floor
  chain of ``stack.floor_chain``: TLS, then mTLS twice, streamed in the pieces the
  mesh's proxy uses, neither encrypted nor stored): what the hops alone allow.

Reading it: each byte crosses three TLS connections (client→gateway, gateway→api,
api→fileservice), each decrypting and re-encrypting it, plus the streaming AEAD,
all in Python processes that share the machine's cores with the client (this
harness, which also does TLS). On a machine shared by everything, the end-to-end
rate is bound by the total CPU per byte; in a deployment (services on cores of
their own) by the busiest process: both are in the CPU table.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from carevault_crypto import DEFAULT_SEGMENT_SIZE, FileKey, StreamingEncryptor
from carevault_crypto.measure import aes256gcm_seconds
from tests.bench.framework import BASELINE, FILES, TIMES, BenchContext, Goal, Measured, Skip, scenario
from tests.bench.procstat import CpuMeter, CpuUsage, peak_rss_mib
from tests.bench.scenarios.records import create_patient

MIB = 1024 * 1024
SERVICES = ("gateway", "api", "records", "fileservice", "keyservice")
MAX_RSS_MIB = 128.0
MIN_RATIO = 0.25
RSS_INTERVAL = 0.02
DISK_SAMPLE_MIB = 512


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


def _streaming_seconds(size_mib: int, base: bytes) -> float:
    """Seconds to encrypt the bytes as fileservice does: carevault's streaming AEAD, one core."""
    encryptor = StreamingEncryptor(FileKey.generate(), b"benchmark-blob-id-0000", segment_size=DEFAULT_SEGMENT_SIZE)
    spent = 0.0
    for i in range(size_mib):
        block = _block(i, base)
        started = time.perf_counter()
        encryptor.update_segments(block)
        spent += time.perf_counter() - started
    started = time.perf_counter()
    encryptor.finalize()
    return spent + time.perf_counter() - started


def _disk_seconds(directory: Path, size_mib: int, base: bytes) -> float:
    """Seconds to write ``size_mib`` MiB to a file in ``directory`` and fsync it."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix="disk-probe-") as handle:
        started = time.perf_counter()
        for i in range(size_mib):
            handle.write(_block(i, base))
        handle.flush()
        os.fsync(handle.fileno())
        return time.perf_counter() - started


def _blob_dir(pid: int | None) -> str:
    """Where fileservice keeps blobs (its FILESERVICE_BLOB_DIR), as far as /proc says."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return "?"
    for item in environ:
        if item.startswith(b"FILESERVICE_BLOB_DIR="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return "?"


def _service_pids(ctx: BenchContext) -> dict[str, int]:
    by_group = {group: pid for pid, group in ctx.meter.named.items()}
    return {name: by_group[name] for name in SERVICES if name in by_group}


async def _profiled(ctx: BenchContext, label: str, seconds: float) -> asyncio.Task[None] | None:
    """--profile: py-spy on every service for (about) the transfer's first ``seconds``."""
    if ctx.profile_dir is None:
        return None
    from tests.bench.profiling import record

    return asyncio.create_task(record(ctx.profile_pids, ctx.profile_dir / f"{ctx.current}-{label}", 0.0, seconds))


def _memory_note(before: dict[str, float], peaks: dict[str, float]) -> str:
    return "RSS before → peak (MiB): " + ", ".join(f"{name} {before[name]:.0f} → {peaks[name]:.0f}" for name in peaks)


@dataclass(frozen=True)
class FloorTransfers:
    up_seconds: float
    down_seconds: float
    up_cpu: CpuUsage
    down_cpu: CpuUsage


async def _floor_transfers(ctx: BenchContext, size_mib: int, base: bytes) -> FloorTransfers:
    """The same bytes up and down through the floor chain: three empty hops over TLS
    and mTLS that stream as the mesh's proxy does, without encryption or storage."""
    assert ctx.floor is not None
    size = size_mib * MIB
    session = ctx.floor.session(1, 3600)
    try:
        await ctx.quiet()

        async def body() -> AsyncIterator[bytes]:
            for i in range(size_mib):
                yield _block(i, base)

        before = ctx.meter.snapshot()
        started = time.perf_counter()
        async with session.post("/stream", data=body(), headers={"content-length": str(size)}) as resp:
            answer = await resp.json()
        up_seconds = time.perf_counter() - started
        up_cpu = CpuMeter.usage(before, ctx.meter.snapshot())
        if resp.status != 200 or answer.get("received") != size:
            raise Skip(f"the floor chain's upload answered {resp.status}: {answer}")
        await ctx.quiet()
        received = 0
        before = ctx.meter.snapshot()
        started = time.perf_counter()
        async with session.get(f"/stream/{size}") as resp:
            async for part in resp.content.iter_any():
                received += len(part)
        down_seconds = time.perf_counter() - started
        down_cpu = CpuMeter.usage(before, ctx.meter.snapshot())
        if resp.status != 200 or received != size:
            raise Skip(f"the floor chain's download answered {resp.status} with {received} of {size} bytes")
    finally:
        await session.close()
    return FloorTransfers(up_seconds, down_seconds, up_cpu, down_cpu)


def _floor_rows(floor: FloorTransfers, size: int, wall: str, reference: float) -> list[Measured]:
    hops = "three empty hops (TLS, then mTLS twice), streamed as the mesh's proxy streams, neither encrypted nor stored"
    return [
        Measured(
            rate=size / seconds / 1e6,
            unit="MB/s",
            label=f"Floor: {wall} {direction} through {hops}",
            baseline_rate=reference,
            goal=Goal(text="none: a reference for the two rows above"),
            note=f"{seconds:.1f} s",
            cpu=cpu,
            requests=size // MIB,
        )
        for direction, seconds, cpu in (("up", floor.up_seconds, floor.up_cpu), ("down", floor.down_seconds, floor.down_cpu))
    ]


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

    # The references first, in this process, on one core (best of two each).
    await ctx.quiet()
    streaming_seconds = min(_streaming_seconds(size_mib, base) for _ in range(2))
    cipher_seconds = min(aes256gcm_seconds(_block(i, base) for i in range(size_mib)) for _ in range(2))
    reference = size / streaming_seconds / 1e6
    cipher_rate = size / cipher_seconds / 1e6
    disk_mib = min(size_mib, DISK_SAMPLE_MIB)
    disk_seconds = await asyncio.to_thread(_disk_seconds, ctx.state_dir.parent, disk_mib, base)
    blob_dir = _blob_dir(pids.get("fileservice"))

    session = ctx.gateway.session(1, 3600)
    common = {**ctx.auth_headers, "x-patient-key": owner.key}
    try:
        await ctx.quiet()

        async def body() -> AsyncIterator[bytes]:
            for i in range(size_mib):
                yield _block(i, base)

        estimate = max(3.0, size / 150e6)
        profiler = await _profiled(ctx, "upload", estimate)
        headers = {
            **common,
            "content-type": "application/octet-stream",
            "content-length": str(size),
            "x-security-context": f"Patient/{owner.id}",
        }
        before = ctx.meter.snapshot()
        up_before = {name: _rss_mib(pid) for name, pid in pids.items()}
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
        down_before = {name: _rss_mib(pid) for name, pid in pids.items()}
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
    floor = await _floor_transfers(ctx, size_mib, base) if ctx.floor is not None else None

    hwm = {name: peak_rss_mib(pid) for name, pid in pids.items()}
    worst = max([*up_peaks.values(), *down_peaks.values()], default=0.0)
    wall = f"{size_mib} MiB"
    on_tmpfs = blob_dir.startswith("/dev/shm/")
    where = f"blobs on tmpfs ({blob_dir})" if on_tmpfs else f"blobs in {blob_dir}"
    rows = [
        Measured(
            rate=reference,
            unit="MB/s",
            label=f"AES-256-GCM encryption of the same {wall}, one core: carevault's streaming AEAD ({DEFAULT_SEGMENT_SIZE // 1024} KiB segments)",
            group=BASELINE,
            baseline_name="files-aes-256-gcm",
            goal=Goal(),
            note=f"{streaming_seconds:.2f} s in the harness (StreamingEncryptor, as fileservice runs it)",
        ),
        Measured(
            rate=cipher_rate,
            unit="MB/s",
            label=f"↳ the cipher alone: AES-256-GCM over the same {wall} in 1 MiB calls, one core",
            group=BASELINE,
            baseline_rate=reference,
            goal=Goal(),
            sub=True,
        ),
        *(
            Measured(
                rate=size / seconds / 1e6,
                unit="MB/s",
                label=label,
                baseline_rate=reference,
                note=f"{seconds:.1f} s{context}; {size / seconds / 1e6 / cipher_rate:.2f}{TIMES} the cipher alone; {_memory_note(before_rss, peaks)}",
                cpu=cpu,
                requests=size_mib,
            )
            for label, seconds, context, cpu, before_rss, peaks in (
                (f"Upload {wall}: POST /fhir/Binary, streamed", up_seconds, f", {where}", up_cpu, up_before, up_peaks),
                (f"Download {wall}: GET /fhir/Binary/{{id}}, streamed", down_seconds, "", down_cpu, down_before, down_peaks),
            )
        ),
        *(_floor_rows(floor, size, wall, reference) if floor is not None else []),
        Measured(
            rate=worst,
            unit="MiB",
            label="Peak RSS of the largest service during the transfers",
            goal=Goal(max_rate=MAX_RSS_MIB, text="each service"),
            note="VmHWM since each service started (MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in hwm.items() if v is not None),
        ),
        Measured(
            rate=disk_mib * MIB / disk_seconds / 1e6,
            unit="MB/s",
            label=f"This machine's disk: {disk_mib} MiB written and fsynced (context: an upload to a local blob directory cannot go faster)",
            goal=Goal(),
            note=f"{ctx.state_dir.parent}",
        ),
    ]
    return rows
