"""Benchmark: 1 GiB up and down through the full mesh (gateway -> api -> fileservice).

    python -m tests.bench_files [--size-mib 1024] [--port-offset 6000] [--markdown docs/benchmarks-files.md]

Starts a fresh local mesh (SQLite, local blob directory), creates a patient, then:

* baseline: single-core AES-256-GCM streaming encryption of the same bytes in this
  process (carevault_crypto.StreamingEncryptor, the code fileservice runs);
* upload: POST /fhir/Binary with a streamed body of ``size`` bytes;
* download: GET /fhir/Binary/{id}, streamed, every byte counted;

and reports MB/s (10^6 bytes per second), the ratio of each to the baseline, and
each service's peak resident memory during each transfer (VmRSS sampled every
20 ms) and since its start (VmHWM). The client runs on the same machine and takes
its share of the CPU (TLS to the gateway): the figures are for the whole machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from carevault_crypto import FileKey, StreamingEncryptor
from tests.support import RunningMesh, new_patient_key, running_mesh

MIB = 1024 * 1024
SERVICES = ("gateway", "api", "records", "fileservice", "keyservice")


def _status_kib(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class MemorySampler:
    pids: dict[str, int]
    interval: float = 0.02
    peaks: dict[str, int] = field(default_factory=dict)

    cpu: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def sampling(self) -> Iterator[dict[str, int]]:
        self.peaks = {name: _status_kib(pid, "VmRSS") for name, pid in self.pids.items()}
        cpu_before = {name: _cpu_seconds(pid) for name, pid in self.pids.items()} | {"client": time.process_time()}
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                for name, pid in self.pids.items():
                    self.peaks[name] = max(self.peaks[name], _status_kib(pid, "VmRSS"))
                stop.wait(self.interval)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield self.peaks
        finally:
            stop.set()
            thread.join()
            after = {name: _cpu_seconds(pid) for name, pid in self.pids.items()} | {"client": time.process_time()}
            self.cpu = {name: after[name] - cpu_before[name] for name in after}


def block(i: int, base: bytes) -> bytes:
    """1 MiB of incompressible bytes, different for every i."""
    return i.to_bytes(8, "big") + base[8:]


def baseline(size: int, base: bytes) -> float:
    """Seconds to encrypt ``size`` bytes with the streaming AEAD, one core, in process."""
    encryptor = StreamingEncryptor(FileKey.generate(), b"benchmark-blob-id-0000")
    started = time.perf_counter()
    for i in range(size // MIB):
        encryptor.update(block(i, base))
    encryptor.finalize()
    return time.perf_counter() - started


async def transfer(mesh: RunningMesh, size: int, base: bytes, sampler: MemorySampler) -> dict[str, object]:
    from tests.e2e.test_records import create_patient

    key = new_patient_key()
    async with mesh.fhir(timeout=None) as fhir:
        patient_id = await create_patient(fhir, key)

        async def body() -> AsyncIterator[bytes]:
            for i in range(size // MIB):
                yield block(i, base)

        headers = {"content-type": "application/octet-stream", "x-security-context": f"Patient/{patient_id}", "x-patient-key": key}
        with sampler.sampling() as upload_peaks:
            started = time.perf_counter()
            resp = await fhir.post("/Binary", content=body(), headers=headers)
            upload_seconds = time.perf_counter() - started
        assert resp.status_code == 201, resp.text
        binary_id = resp.json()["id"]
        upload_peaks = dict(upload_peaks)
        upload_cpu = dict(sampler.cpu)

        received = 0
        with sampler.sampling() as download_peaks:
            started = time.perf_counter()
            async with fhir.stream("GET", f"/Binary/{binary_id}", headers={"x-patient-key": key, "accept": "*/*"}) as got:
                assert got.status_code == 200
                first = b""
                async for part in got.aiter_raw():
                    if not first:
                        first = part[:64]
                    received += len(part)
            download_seconds = time.perf_counter() - started
        assert received == size, (received, size)
        assert first == block(0, base)[: len(first)]
        download_peaks = dict(download_peaks)
        download_cpu = dict(sampler.cpu)
    hwm = {name: _status_kib(pid, "VmHWM") for name, pid in sampler.pids.items()}
    return {
        "upload_seconds": upload_seconds,
        "download_seconds": download_seconds,
        "upload_peaks": upload_peaks,
        "download_peaks": download_peaks,
        "hwm": hwm,
        "upload_cpu": upload_cpu,
        "download_cpu": download_cpu,
    }


def render(size: int, base_seconds: float, result: dict[str, object]) -> str:
    def mbps(seconds: float) -> float:
        return size / seconds / 1e6

    base_rate = mbps(base_seconds)
    up, down = mbps(float(result["upload_seconds"])), mbps(float(result["download_seconds"]))  # type: ignore[arg-type]
    lines = [
        f"Files benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {size // MIB} MiB, local mesh on SQLite, local blob directory, "
        "64 KiB segments; the client on the same machine.",
        "",
        "| measure | MB/s | ratio to AES-256-GCM, one core |",
        "|---|---|---|",
        f"| baseline: StreamingEncryptor in process, one core | {base_rate:,.0f} | 1.00 |",
        f"| upload through gateway -> api -> fileservice | {up:,.0f} | {up / base_rate:.2f} |",
        f"| download through fileservice -> api -> gateway | {down:,.0f} | {down / base_rate:.2f} |",
        "",
        "| process | peak RSS during upload (MiB) | during download (MiB) | VmHWM since start (MiB) | CPU s, upload | CPU s, download |",
        "|---|---|---|---|---|---|",
    ]
    for name in (*SERVICES, "client"):
        cpu_up = result["upload_cpu"][name]  # type: ignore[index]
        cpu_down = result["download_cpu"][name]  # type: ignore[index]
        if name == "client":
            lines.append(f"| client (this process: TLS, generating or counting bytes) | — | — | — | {cpu_up:.1f} | {cpu_down:.1f} |")
            continue
        up_peak = result["upload_peaks"][name] / 1024  # type: ignore[index]
        down_peak = result["download_peaks"][name] / 1024  # type: ignore[index]
        hwm = result["hwm"][name] / 1024  # type: ignore[index]
        lines.append(f"| {name} | {up_peak:.0f} | {down_peak:.0f} | {hwm:.0f} | {cpu_up:.1f} | {cpu_down:.1f} |")
    seconds = (float(result["upload_seconds"]), float(result["download_seconds"]))  # type: ignore[arg-type]
    lines += ["", f"Wall time: upload {seconds[0]:.1f} s, download {seconds[1]:.1f} s; the machine has {os.cpu_count()} CPUs."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("CAREVAULT_BENCH_PORT_OFFSET", "6000")))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables to this file")
    args = parser.parse_args()
    size = args.size_mib * MIB
    base = os.urandom(MIB)
    base_seconds = min(baseline(size, base) for _ in range(2))
    with (
        tempfile.TemporaryDirectory(prefix="carevault-bench-") as state,
        running_mesh(Path(state) / "mesh", args.port_offset, "sqlite") as mesh,
    ):
        sampler = MemorySampler({name: mesh.mesh.processes[name].pid for name in SERVICES})
        result = asyncio.run(transfer(mesh, size, base, sampler))
    text = render(size, base_seconds, result)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
