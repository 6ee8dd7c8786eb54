"""What a benchmark run stands up, and always takes down: the mesh on PostgreSQL
and Redis (as the PostgreSQL end-to-end tests start it, on its own ports), and the
baseline app.

Every process is started in its own session, so a Ctrl-C in the terminal reaches
only the harness, which then stops them in order. The pids go to a file; a run
killed outright (SIGKILL) leaves them behind, and the next run ends exactly those
processes (same pid and start time) before it begins.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from carevault_cli.mesh import stop_process, wait_until_ok
from tests.bench.procstat import process_start_ticks
from tests.support import POSTGRES_URL, REPO_ROOT, RunningMesh, drop_databases, free_port_offset, running_mesh

# Free ports and databases of this run's own: other runs (tests, another checkout's
# benchmark) may share the machine and its PostgreSQL.
PORT_OFFSET = free_port_offset()
DB_PREFIX = f"cvbench{PORT_OFFSET}"
BASELINE_DB = f"{DB_PREFIX}_baseline"
BASELINE_PORT = 8400 + PORT_OFFSET
STATE_ROOT = REPO_ROOT / ".carevault" / "bench"
# The gateway's per-client rate limit would turn a loopback load test into 429s;
# raised here (the Redis round trip of the limiter stays on the path).
# Otherwise the mesh runs on the chart's defaults: audit checkpoints every 300 s (the
# tests' mesh signs one a second) and no span export (the tests' mesh exports every
# span to a local collector; `--mesh-env` with *_OTLP_ENDPOINT measures that cost).
MESH_ENV = {
    "GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
    "GATEWAY_RATE_LIMIT_BURST": "1000000",
    "API_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "300",
}
# fileservice's blobs go to a tmpfs when there is one: the files scenario measures the
# mesh, not this machine's disk (which it measures apart). Removed with the stack.
TMPFS = Path("/dev/shm")
BLOB_DIR_PREFIX = "carevault-bench-blobs-"


@contextmanager
def _blob_dir() -> Iterator[dict[str, str]]:
    if not (TMPFS.is_dir() and os.access(TMPFS, os.W_OK)):
        yield {}
        return
    path = Path(tempfile.mkdtemp(prefix=BLOB_DIR_PREFIX, dir=TMPFS))
    try:
        yield {"FILESERVICE_BLOB_DIR": str(path)}
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Stack:
    mesh: RunningMesh
    baseline_url: str
    baseline: subprocess.Popen[bytes]
    floor_url: str
    floor: list[subprocess.Popen[bytes]]

    @property
    def pids(self) -> dict[str, int]:
        pids = {service: proc.pid for service, proc in self.mesh.mesh.processes.items()}
        pids["baseline"] = self.baseline.pid
        for hop, proc in enumerate(self.floor, start=1):
            pids[f"floor-{hop}"] = proc.pid
        return pids


def _pidfile() -> Path:
    return STATE_ROOT / "pids"


def _record_pids(pids: dict[str, int]) -> None:
    lines = []
    for name, pid in pids.items():
        start = process_start_ticks(pid)
        if start is not None:
            lines.append(f"{name} {pid} {start}\n")
    _pidfile().write_text("".join(lines), encoding="utf-8")


def end_leftovers() -> None:
    """End the processes a previous run recorded and left running (only those:
    matched by pid and start time, so a reused pid is never hit)."""
    path = _pidfile()
    if not path.is_file():
        return
    alive: list[int] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            name, pid_text, start_text = line.split()
            pid, start = int(pid_text), int(start_text)
        except ValueError:
            continue
        if process_start_ticks(pid) == start:
            print(f"bench: ending {name} (pid {pid}) left by an earlier run", file=sys.stderr)
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
    deadline = time.monotonic() + 15
    for pid in alive:
        while process_start_ticks(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_start_ticks(pid) is not None:
            os.kill(pid, signal.SIGKILL)
    path.unlink()


async def _recreate_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _dsn(database: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + database


def _uvicorn(port: int, env: dict[str, str], tls: list[str], log_name: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "tests.bench.baseline:app",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--workers", "1", "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", "30", "--backlog", "4096", *tls,
    ]  # fmt: skip
    with open(STATE_ROOT / log_name, "ab") as log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )


@contextmanager
def baseline_server(port: int = BASELINE_PORT) -> Iterator[subprocess.Popen[bytes]]:
    asyncio.run(_recreate_database(BASELINE_DB))
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    proc = _uvicorn(port, {"CVBENCH_BASELINE_DSN": _dsn(BASELINE_DB)}, [], "baseline.stderr")
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", proc, 30, name="the baseline", logs=STATE_ROOT / "baseline.stderr")
        yield proc
    finally:
        stop_process(proc)


# The floor chain: three copies of the baseline app in a row, over TLS as the mesh
# (the first one TLS for clients, the next two mTLS with the mesh's certificates),
# the last one doing the baseline's SELECT (on the baseline's table).
FLOOR_HOPS = (("gateway", "api"), ("api", "records"), ("records", None))


@contextmanager
def floor_chain(mesh_state: Path, first_port: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """The three hops up (their entry URL and processes); stopped on exit."""
    certs, ca = mesh_state / "certs", str(mesh_state / "ca.pem")
    ports = [first_port + i for i in range(len(FLOOR_HOPS))]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # From the last hop to the first, so each one's next hop is already listening.
        for index in reversed(range(len(FLOOR_HOPS))):
            identity, client = FLOOR_HOPS[index]
            tls = ["--ssl-certfile", str(certs / f"{identity}.pem"), "--ssl-keyfile", str(certs / f"{identity}-key.pem")]
            if index > 0:  # behind the first hop every caller presents the mesh's certificate
                tls += ["--ssl-ca-certs", ca, "--ssl-cert-reqs", str(int(ssl.CERT_REQUIRED))]
            env = {"CVBENCH_BASELINE_DSN": _dsn(BASELINE_DB)}
            if client is not None:
                env |= {
                    "CVBENCH_RELAY_TO": f"https://127.0.0.1:{ports[index + 1]}",
                    "CVBENCH_CLIENT_CERT": str(certs / f"{identity}.pem"),
                    "CVBENCH_CLIENT_KEY": str(certs / f"{identity}-key.pem"),
                    "CVBENCH_CA": ca,
                }
            procs.append(_uvicorn(ports[index], env, tls, "floor.stderr"))
        url = f"https://127.0.0.1:{ports[0]}"
        context = ssl.create_default_context(cafile=ca)
        wait_until_ok(url + "/healthz", procs, 30, name="a floor hop", logs=STATE_ROOT / "floor.stderr", context=context)
        yield url, procs
    finally:
        for proc in procs:
            stop_process(proc)


def _ignore_signals() -> None:
    """While tearing down: a second Ctrl-C must not leave half the processes running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def bench_stack(mesh_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The mesh (PostgreSQL + Redis, on free ports) and the baseline, up and ready;
    both stopped on exit, whatever the exit. ``mesh_env`` adds to the services' environment."""
    # SIGTERM behaves as Ctrl-C: unwinds through every `finally` below (SIGINT is set
    # too, in case this was started with it ignored, as background jobs are).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    end_leftovers()
    try:
        with (
            _blob_dir() as blob_env,
            running_mesh(
                STATE_ROOT / "mesh",
                PORT_OFFSET,
                "postgres",
                MESH_ENV | blob_env | (mesh_env or {}),
                db_prefix=DB_PREFIX,
                export_telemetry=False,
            ) as mesh,
        ):
            try:
                _record_pids({service: proc.pid for service, proc in mesh.mesh.processes.items()})
                with baseline_server() as baseline, floor_chain(mesh.state_dir, BASELINE_PORT + 1) as (floor_url, floor):
                    stack = Stack(mesh, f"http://127.0.0.1:{BASELINE_PORT}", baseline, floor_url, floor)
                    _record_pids(stack.pids)
                    try:
                        yield stack
                    finally:
                        _ignore_signals()
            finally:
                _ignore_signals()
    finally:
        _ignore_signals()
        _pidfile().unlink(missing_ok=True)
        asyncio.run(_drop_run_databases())


async def settle_databases() -> None:
    """VACUUM (ANALYZE) every database of the run, then a CHECKPOINT: what the previous
    scenario wrote is flushed and vacuumed before the next one is measured."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        names = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", f"{DB_PREFIX}\\_%")
    finally:
        await conn.close()
    for record in names:
        db = await asyncpg.connect(_dsn(record["datname"]))
        try:
            await db.execute("VACUUM (ANALYZE)")
        finally:
            await db.close()
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _drop_run_databases() -> None:
    """The run's databases go with it (the scale scenario leaves gigabytes)."""
    import asyncpg

    await drop_databases(DB_PREFIX)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BASELINE_DB}" WITH (FORCE)')
    finally:
        await conn.close()
