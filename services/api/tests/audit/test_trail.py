"""The audit trail against a real database: appends chain, concurrent replicas
serialise, checkpoints sign the head, retention prunes at a signed checkpoint."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from carevault_api.audit.service import Actor, AuditTrail, AuditUnavailable
from carevault_api.config import MIGRATIONS_DIR
from carevault_cli.audit import verify_database
from carevault_common.db import create_engine, run_migrations, session_factory
from carevault_crypto.checkpoint import generate_checkpoint_signer
from carevault_crypto.pseudonym import PseudonymKey

ACTOR = Actor("t1", "dr-house", "client-1", "TREAT")


def trail_for(url: str, signer=None, retention_days: int = 3653) -> tuple[AuditTrail, object]:  # type: ignore[no-untyped-def]
    engine = create_engine(url)
    return AuditTrail(session_factory(engine), PseudonymKey.generate(), signer, retention=timedelta(days=retention_days)), engine


async def test_events_chain_and_verify(api_database: str) -> None:
    signer = generate_checkpoint_signer()
    trail, engine = trail_for(api_database, signer)
    for i in range(5):
        await trail.append("fhir.read", ACTOR, outcome=200, resource_type="Observation", resource_id=f"{i:08d}-0000-4000-8000-000000000000")
    assert await trail.checkpoint() == 5
    assert await trail.checkpoint() is None  # nothing new to sign
    await trail.append("fhir.search", ACTOR, outcome=200, resource_type="Observation", patient_id="p1", details={"params": ["code"]})
    await engine.dispose()  # type: ignore[attr-defined]
    report = await verify_database(api_database, signer.verifier())
    assert report.ok, report.findings
    assert (report.events, report.checkpoints_valid, report.last_signed_seq, report.unsigned_tail) == (6, 1, 5, 1)


async def test_patient_ids_are_stored_as_pseudonyms_only(api_database: str) -> None:
    trail, engine = trail_for(api_database)
    patient = "3f2c1d7e-8a9b-4c5d-9e0f-123456789abc"
    await trail.append("fhir.read", ACTOR, outcome=200, resource_type="Patient", resource_id=patient)
    await trail.append("fhir.read", ACTOR, outcome=200, resource_type="Observation", resource_id="o1", patient_id=patient)
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = (await conn.execute(text("SELECT resource_type, resource_id, patient FROM audit_events ORDER BY seq"))).all()
    await engine.dispose()  # type: ignore[attr-defined]
    expected = trail.pseudonym("t1", patient)
    assert [tuple(r) for r in rows] == [("Patient", None, expected), ("Observation", "o1", expected)]
    assert patient not in repr(rows)


async def test_an_unknown_event_name_is_a_programming_error(api_database: str) -> None:
    trail, engine = trail_for(api_database)
    with pytest.raises(ValueError, match="unknown audit event"):
        await trail.append("fhir.peek", ACTOR, outcome=200)
    await engine.dispose()  # type: ignore[attr-defined]


async def test_an_event_that_cannot_be_stored_fails_the_caller(api_database: str) -> None:
    trail, engine = trail_for(api_database)
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable) as refused:
        await trail.append("fhir.read", ACTOR, outcome=200)
    assert refused.value.status == 503
    await engine.dispose()  # type: ignore[attr-defined]


async def test_retention_prunes_at_a_signed_checkpoint_and_the_chain_still_verifies(api_database: str) -> None:
    signer = generate_checkpoint_signer()
    trail, engine = trail_for(api_database, signer, retention_days=365)
    for _ in range(4):
        await trail.append("fhir.read", ACTOR, outcome=200)
    await trail.checkpoint()  # seq 4
    for _ in range(3):
        await trail.append("fhir.read", ACTOR, outcome=200)
    assert await trail.prune(datetime.now(UTC)) == 0  # nothing is old enough
    assert await trail.prune(datetime.now(UTC) + timedelta(days=400)) == 4
    await engine.dispose()  # type: ignore[attr-defined]
    report = await verify_database(api_database, signer.verifier())
    assert report.ok, report.findings
    assert (report.first_seq, report.last_seq) == (5, 8)  # 8: the audit.pruned event


async def test_an_append_sqlite_refuses_at_once_is_written_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SQLite may refuse a write at once when another process holds the database
    (SQLITE_BUSY without waiting); nothing was stored, so the batch is run again
    rather than refusing the request. Here the engine does not wait at all, and the
    other process lets go the moment the first attempt has been refused."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'api.sqlite'}"
    run_migrations(MIGRATIONS_DIR, url)
    other_process = sqlite3.connect(tmp_path / "api.sqlite", check_same_thread=False)
    other_process.execute("BEGIN IMMEDIATE")  # holds the write lock
    impatient = create_async_engine(url, connect_args={"timeout": 0})
    refusals: list[str | None] = []

    @event.listens_for(impatient.sync_engine, "handle_error")
    def let_go(context) -> None:  # type: ignore[no-untyped-def]
        refusals.append(getattr(context.original_exception, "sqlite_errorname", None))
        other_process.rollback()

    trail = AuditTrail(session_factory(impatient), PseudonymKey.generate(), None, retention=timedelta(days=3653))
    await trail.append("fhir.read", ACTOR, outcome=200)
    await impatient.dispose()
    other_process.close()
    assert refusals == ["SQLITE_BUSY"]
    report = await verify_database(url, None)
    assert report.ok, report.findings
    assert report.events == 1


REPLICA = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import timedelta
    from carevault_api.audit.service import Actor, AuditTrail
    from carevault_common.db import create_engine, session_factory
    from carevault_common.logging import configure_logging
    from carevault_crypto.pseudonym import PseudonymKey

    async def main(url, count, tasks, start_at):
        engine = create_engine(url)
        trail = AuditTrail(session_factory(engine), PseudonymKey.generate(), None, retention=timedelta(days=3653), lock_timeout_ms=30000)
        actor = Actor("t1", "replica", None, None)
        async def worker(n):
            for _ in range(n):
                await trail.append("fhir.read", actor, outcome=200, resource_type="Observation")
        await asyncio.sleep(max(0.0, start_at - time.time()))  # every replica starts at once
        await asyncio.gather(*(worker(count // tasks) for _ in range(tasks)))
        print(time.time())
        await engine.dispose()

    configure_logging("api", "WARNING")  # a refused batch says why (error_code), on stderr
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    """
)


async def test_three_replicas_appending_at_once_keep_one_unbroken_chain(api_database: str) -> None:
    """Three api processes, eight concurrent requests each, one database."""
    per_replica, tasks = 200, 8
    start_at = time.time() + 8
    args = [sys.executable, "-c", REPLICA, api_database, str(per_replica), str(tasks), str(start_at)]
    replicas = [subprocess.Popen(args, stdout=subprocess.PIPE) for _ in range(3)]
    outputs = [p.communicate(timeout=240)[0] for p in replicas]
    assert [p.returncode for p in replicas] == [0, 0, 0]
    elapsed = max(float(out) for out in outputs) - start_at
    report = await verify_database(api_database, None)
    assert report.ok, report.findings
    assert (report.events, report.first_seq, report.last_seq) == (3 * per_replica, 1, 3 * per_replica)
    print(f"\n{3 * per_replica} events from 3 replicas x {tasks} tasks in {elapsed:.2f}s ({3 * per_replica / elapsed:.0f} events/s)")


async def test_other_domains_record_their_events_with_audit_record(api_database: str) -> None:
    """The function the sign-in, administration and break-glass domains call."""
    from types import SimpleNamespace

    from carevault_api import audit
    from carevault_api.auth.principal import Principal

    trail, engine = trail_for(api_database)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(audit=trail)))
    await audit.record(
        request, "signin.failure", outcome=401, tenant="t1", subject="jdoe", client_id="mobile", details={"reason": "bad-password"}
    )  # type: ignore[arg-type]
    await audit.record(request, "admin.role.grant", outcome=200, principal=Principal("t1", "admin-1"), details={"role": "auditor"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown audit event"):
        await audit.record(request, "signin.maybe", outcome=200, tenant="t1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="principal or a tenant"):
        await audit.record(request, "signin.success", outcome=200)  # type: ignore[arg-type]
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = (
            await conn.execute(text("SELECT event, category, action, principal, client_id, details FROM audit_events ORDER BY seq"))
        ).all()
    await engine.dispose()  # type: ignore[attr-defined]
    assert [tuple(r) for r in rows] == [
        ("signin.failure", "sign-in", "E", "jdoe", "mobile", '{"reason":"bad-password"}'),
        ("admin.role.grant", "admin", "C", "admin-1", None, '{"role":"auditor"}'),
    ]
