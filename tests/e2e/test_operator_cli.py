"""`carevault run` (what `make run` calls) starts the platform and stops it cleanly;
services refuse to start on bad settings; migrations match the models."""

from __future__ import annotations

import importlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from carevault_cli.mesh import DB_SERVICES
from carevault_common.app import READINESS_CACHE_SECONDS
from tests.support import REPO_ROOT, free_port_offset

SERVICES = ("gateway", "api", "records", "keyservice", "fileservice")
MIGRATIONS = {
    "api": REPO_ROOT / "services/api/migrations",
    "records": REPO_ROOT / "services/records/migrations",
    "keyservice": REPO_ROOT / "keyservice/migrations",
    "fileservice": REPO_ROOT / "fileservice/migrations",
}


def test_carevault_run_serves_then_stops_every_service_on_sigterm(tmp_path: Path) -> None:
    offset = free_port_offset()
    proc = subprocess.Popen(
        [sys.executable, "-m", "carevault_cli", "--state-dir", str(tmp_path / "state"), "--port-offset", str(offset), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "carevault is running" in line or proc.poll() is not None:
                break
        assert any(f"https://127.0.0.1:{8443 + offset}" in line for line in lines), lines
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 5
        assert_one_trace_id_in_every_log(tmp_path / "state", offset)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopped: gateway=0, api=0, fileservice=0, records=0, keyservice=0" in out
        time.sleep(0.5)
        for pid in children:
            assert not Path(f"/proc/{pid}").exists(), f"service process {pid} outlived carevault run"
    finally:
        if proc.poll() is None:  # a failed assertion must not leave the platform running
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)], check=False)  # children first, while still its own
            proc.kill()


def assert_one_trace_id_in_every_log(state: Path, offset: int) -> None:
    """On the defaults (no OTLP endpoint, so no span is recorded) a request still gets a
    trace id at the gateway that every hop logs: a health check fans out to all five."""
    time.sleep(READINESS_CACHE_SECONDS * 1.5)  # the start-up polling's cached answers expire
    context = ssl.create_default_context(cafile=str(state / "ca.pem"))
    ready_by = time.monotonic() + 15  # one hop stalled past its 2 s readiness budget is one 503: ask again
    while (resp := httpx.get(f"https://127.0.0.1:{8443 + offset}/healthz", verify=context, timeout=10)).status_code != 200:
        assert time.monotonic() < ready_by, resp.text
        time.sleep(0.5)
    request_id = resp.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while True:
        logs = {s: (state / "logs" / f"{s}.log").read_text(encoding="utf-8") for s in SERVICES}
        lines = [json.loads(line) for line in logs["gateway"].splitlines() if request_id in line]
        trace_ids = {line["trace_id"] for line in lines if "trace_id" in line}
        missing = [s for s, text in logs.items() if not trace_ids or not all(t in text for t in trace_ids)]
        if (trace_ids and not missing) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(trace_ids) == 1 and not missing, (trace_ids, missing)
    assert trace_ids != {"0" * 32}, "no valid trace id was made"


def test_a_service_refuses_to_start_with_missing_tls_material(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDS_")}
    env |= {"RECORDS_TLS_CERT_FILE": str(tmp_path / "nope.pem"), "RECORDS_TLS_KEY_FILE": "x", "RECORDS_TLS_CA_FILE": "y"}
    env["RECORDS_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite'}"
    result = subprocess.run([sys.executable, "-m", "carevault_records", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "tls_cert_file" in result.stderr
    assert "nope.pem" in result.stderr


@pytest.mark.parametrize("service", DB_SERVICES)
def test_migrations_match_the_models(service: str, tmp_path: Path) -> None:
    """What `alembic check` does: upgrade a fresh database, then compare with the models."""
    db = tmp_path / f"{service}.sqlite"
    env = dict(os.environ, **{f"{service.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{db}"})
    subprocess.run([sys.executable, "-m", f"carevault_{service}", "migrate"], env=env, check=True, timeout=120)
    models = importlib.import_module(f"carevault_{service}.models")
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": f"alembic_version_{service}", "compare_type": True})
        diff = compare_metadata(context, models.Base.metadata)
    assert diff == [], diff
