"""What the cross-service tests share: real databases, real processes, real TLS."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from carevault_cli.mesh import DB_SERVICES, ENV_PREFIX, Mesh, MeshLayout, migrate_all, prepare_state, seed_demo
from tests.telemetry_sink import TelemetrySink

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("CAREVAULT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CAREVAULT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def skip_or_fail(reason: str) -> None:
    """Outside CI a missing dependency skips; under CI=true it is a failure."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must not be skipped)")
    pytest.skip(reason)


def shared_data_dir() -> Path:
    path = (REPO_ROOT / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        skip_or_fail(f"test data not found at {path}: clone beside ../shared to run these tests")
    return path


async def _postgres_available() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def require_postgres() -> str:
    if not asyncio.run(_postgres_available()):
        skip_or_fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (set CAREVAULT_TEST_POSTGRES)")
    return POSTGRES_URL


def require_redis() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL} (set CAREVAULT_TEST_REDIS)")
    return REDIS_URL


async def recreate_databases(prefix: str) -> str:
    """Fresh PostgreSQL databases ``<prefix>_<service>``; returns the URL template."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for service in DB_SERVICES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{service}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{prefix}_{service}"')
    finally:
        await conn.close()
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return base + "/" + prefix + "_{service}"


@dataclass
class RunningMesh:
    layout: MeshLayout
    mesh: Mesh
    backend: str
    telemetry: TelemetrySink
    # What `carevault-api seed` printed (the demo administrator's credentials).
    seed_output: str = ""

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    def ssl_context(self, identity: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.state_dir / "ca.pem"))
        if identity is not None:
            certs = self.state_dir / "certs"
            context.load_cert_chain(certs / f"{identity}.pem", certs / f"{identity}-key.pem")
        return context

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        """A client of the public gateway, trusting only the local CA."""
        return httpx.AsyncClient(base_url=self.layout.gateway_url, verify=self.ssl_context(), timeout=30, **kwargs)  # type: ignore[arg-type]

    @property
    def dev_token(self) -> str:
        return self.layout.dev_token_file.read_text(encoding="utf-8").strip()

    def fhir(self, **kwargs: object) -> httpx.AsyncClient:
        """A FHIR client of the gateway with the development bearer token."""
        headers = {"authorization": f"Bearer {self.dev_token}", "accept": "application/fhir+json"}
        options: dict[str, object] = {"timeout": 60, **kwargs}
        return httpx.AsyncClient(base_url=self.layout.gateway_url + "/fhir", verify=self.ssl_context(), headers=headers, **options)  # type: ignore[arg-type]

    async def db_execute(self, service: str, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Run SQL directly against a service's database (for tamper and scan tests)."""
        url = self.layout.database_url(service)
        if url.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(url.split("///", 1)[1]) as conn:
                rows = conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args).fetchall()
                conn.commit()
                return [tuple(r) for r in rows]
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    async def dump_databases(self) -> bytes:
        """Every byte of every service database, for the secrets scan."""
        out = bytearray()
        for service in DB_SERVICES:
            url = self.layout.database_url(service)
            if url.startswith("sqlite"):
                path = Path(url.split("///", 1)[1])
                for candidate in (path, path.with_name(path.name + "-wal")):
                    if candidate.exists():
                        out += candidate.read_bytes()
                continue
            tables = await self.db_execute(service, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            for (table,) in tables:
                for row in await self.db_execute(service, f'SELECT * FROM "{table}"'):
                    for value in row:
                        out += bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode()
                        out += b"\x00"
        return bytes(out)

    def state_files(self) -> bytes:
        """Every file under the state directory except the databases and the blob
        store (scanned apart)."""
        out = bytearray()
        for path in sorted(self.state_dir.rglob("*")):
            relative = path.relative_to(self.state_dir).parts
            if path.is_file() and relative[0] not in ("db", "blobs"):
                out += path.read_bytes()
        return bytes(out)

    def blob_store(self) -> bytes:
        """Every stored object and leftover upload of fileservice's local blob store:
        ciphertext only, so no canary placed in an uploaded file may appear."""
        out = bytearray()
        for path in sorted((self.state_dir / "blobs").rglob("*")):
            if path.is_file():
                out += path.read_bytes()
        return bytes(out)

    def logs(self, service: str) -> str:
        path = self.layout.log_file(service)
        return path.read_text(encoding="utf-8") if path.exists() else ""


def free_port_offset() -> int:
    """A port offset at which all ten ports of a mesh are free. Random, so that
    test runs in parallel (other checkouts on the same machine) rarely collide."""
    import random
    import socket

    from carevault_cli.mesh import MANAGEMENT_PORTS, TLS_PORTS

    ports = [*TLS_PORTS.values(), *MANAGEMENT_PORTS.values()]
    for _ in range(200):
        offset = random.randrange(1000, 23000, 10)  # below the ephemeral port range
        try:
            for port in ports:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port range for a test mesh")


async def get_when_ready(client: httpx.AsyncClient, path: str = "/healthz", headers: dict[str, str] | None = None) -> httpx.Response:
    """GET a readiness endpoint until it answers 200, for up to 15 s; the last answer.
    Readiness gives each hop it asks READINESS_TIMEOUT_SECONDS (2 s): on a loaded
    machine one stall that long is one 503, which is right of a probe and no finding
    of a test. A mesh that stays unready still fails the caller's assertion."""
    deadline = time.monotonic() + 15
    while True:
        resp = await client.get(path, headers=headers)
        if resp.status_code == 200 or time.monotonic() > deadline:
            return resp
        await asyncio.sleep(0.5)


def read_http_answer(tls: ssl.SSLSocket) -> bytes:
    """An HTTP/1.1 answer read off a raw socket: the head and the body its Content-Length
    announces (or what came before the connection closed)."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
        chunk = tls.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def _content_length(answer: bytes) -> int:
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer.partition(b"\r\n\r\n")[0])
    return int(match.group(1)) if match else 0


async def drop_databases(prefix: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for service in DB_SERVICES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{service}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def running_mesh(
    state_dir: Path,
    port_offset: int,
    backend: str,
    extra_env: dict[str, str] | None = None,
    *,
    db_prefix: str | None = None,
    export_telemetry: bool = True,
) -> Iterator[RunningMesh]:
    """The five services as subprocesses, stopped on exit; on PostgreSQL the databases
    ``<db_prefix>_<service>`` (default ``cvtest<port_offset>``) are recreated first.
    Every service's error reports and spans go to a local collector whose captures
    land in ``<state_dir>/telemetry``: the scans for keys and canaries read them.
    ``export_telemetry=False`` leaves them off, as the chart's defaults do (benchmarks)."""
    if state_dir.exists():
        shutil.rmtree(state_dir)
    template, redis_url = "", ""
    if backend == "postgres":
        require_postgres()
        redis_url = require_redis()
        template = asyncio.run(recreate_databases(db_prefix or f"cvtest{port_offset}"))
    sink = TelemetrySink(state_dir / "telemetry")
    # Checkpoints of the audit chain every second (300 s by default), so tests see them.
    exported = sink.env(list(ENV_PREFIX.values())) if export_telemetry else {}
    env = exported | {"API_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "1"} | (extra_env or {})
    layout = MeshLayout(state_dir=state_dir, port_offset=port_offset, database_url_template=template, redis_url=redis_url, extra_env=env)
    prepare_state(layout)
    migrate_all(layout)
    seeded = seed_demo(layout)
    mesh = Mesh(layout)
    try:
        mesh.start()
        mesh.wait_ready(timeout=60)
        yield RunningMesh(layout, mesh, backend, sink, seeded)
    finally:
        mesh.stop()
        sink.stop()


# -- secrets the tests put into the platform, for the scan after the suite -------------

SECRETS_USED: list[bytes] = []
CANARIES: list[str] = []


def remember_secret(raw: bytes) -> None:
    SECRETS_USED.append(raw)


def canary(kind: str) -> str:
    """A unique string placed in health content; it must never be found at rest."""
    import uuid

    value = f"CANARY{kind.upper()}{uuid.uuid4().hex[:16]}"
    CANARIES.append(value)
    return value


def new_patient_key() -> str:
    """A fresh patient key in its header form; remembered for the scan."""
    import base64
    import secrets

    raw = secrets.token_bytes(32)
    remember_secret(raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def secret_forms(raw: bytes) -> list[bytes]:
    import base64

    return [
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        base64.b64encode(raw).rstrip(b"="),
    ]


# A needle at least this long holds, wherever it sits, one whole 8-byte block of the
# haystack that starts at a multiple of 8 (at one of 8 offsets into the needle).
_BLOCK = 8
_MIN_ANCHORED = 2 * _BLOCK - 1
_CHUNK_BLOCKS = 1 << 20


# A file key in its transport form (base64url of 0x01 | 32 bytes): what api hands
# fileservice per request. It must never be stored or logged.
_FILE_KEY_TRANSPORT = re.compile(rb"(?<![A-Za-z0-9_-])AQ[A-Za-z0-9_-]{42}(?![A-Za-z0-9_-])")
# Certificates and keys of the mesh's own PKI: standard base64, whose "+" and "/" and
# line ends bound 44-character runs that now and then begin with "AQ" (the run of a
# P-256 key's algorithm identifier, when its alignment puts it at a line start).
_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.DOTALL)


def find_file_key(haystack: bytes) -> bytes | None:
    """The first run of ``haystack`` that has the form of a transmitted file key,
    outside PEM blocks (which hold DER, never one)."""
    found = _FILE_KEY_TRANSPORT.search(_PEM_BLOCK.sub(b"-", haystack))
    return found.group() if found else None


def find_needles(haystack: bytes, needles: Iterable[bytes]) -> set[bytes]:
    """The needles that occur in ``haystack``, in one pass over it whatever their
    number (``needle in haystack`` for each of hundreds of keys in five forms over
    every database, log and blob took most of a minute at the end of the suite).

    Each needle of 15 bytes or more is indexed by its eight 8-byte slices at offsets
    0-7; the haystack's aligned 8-byte blocks are looked up in that index (a set, in
    C), and only a block that hits is checked in place. Shorter needles are searched
    for directly."""
    import sys

    found: set[bytes] = set()
    anchors: dict[int, list[tuple[bytes, int]]] = {}
    for needle in set(needles):
        if len(needle) < _MIN_ANCHORED:
            if needle in haystack:
                found.add(needle)
            continue
        for offset in range(_BLOCK):
            key = int.from_bytes(needle[offset : offset + _BLOCK], sys.byteorder)
            anchors.setdefault(key, []).append((needle, offset))
    if not anchors:
        return found
    keys = anchors.keys()
    whole = len(haystack) - len(haystack) % _BLOCK
    blocks = memoryview(haystack)[:whole].cast("Q")
    for first in range(0, len(blocks), _CHUNK_BLOCKS):
        chunk = blocks[first : first + _CHUNK_BLOCKS]
        if keys.isdisjoint(chunk):
            continue
        for index, value in enumerate(chunk.tolist(), start=first):
            for needle, offset in anchors.get(value, ()):
                start = index * _BLOCK - offset
                if start >= 0 and haystack[start : start + len(needle)] == needle:
                    found.add(needle)
    return found
