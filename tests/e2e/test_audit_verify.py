"""`carevault audit verify` against the running mesh's database: an altered, deleted,
inserted or reordered event is named, with its place. Each case tampers with the
real table (as someone with database access would) and puts it back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from carevault_common.auditchain import EventContent, event_hash
from tests.audit_support import carevault, create_patient, last_seq, verify
from tests.support import RunningMesh, new_patient_key

COLUMNS = (
    "seq, event_id, recorded_at, tenant, event, category, action, outcome, resource_type, resource_id, patient, "
    "principal, client_id, request_id, purpose, legal_basis, details, prev_hash, hash"
)
SHIFT = 1_000_000
ATTEMPTS = 5


@pytest.fixture
async def trail(mesh: RunningMesh) -> AsyncIterator[int]:
    """Some fresh events, all covered by a signed checkpoint; yields a seq among them
    whose neighbours (seq - 1 .. seq + 1) no checkpoint signed and which is not the head.

    Checkpoints are signed every second here, so one can land on any of the fresh
    events; a case tampering there would (rightly) also be reported as a `checkpoint`
    finding, which the exact assertions below do not expect."""
    key = new_patient_key()
    start = await last_seq(mesh)
    async with mesh.fhir() as fhir:
        patient_id = await create_patient(fhir, key)
        for _ in range(ATTEMPTS):
            # At once, so that a checkpoint rarely falls among them.
            reads = await asyncio.gather(*(fhir.get(f"/Patient/{patient_id}", headers={"x-patient-key": key}) for _ in range(6)))
            assert [r.status_code for r in reads] == [200] * 6
            head = await last_seq(mesh)
            await signed_up_to(mesh, head)
            rows = await mesh.db_execute("api", "SELECT seq FROM audit_checkpoints WHERE seq > $1", start)
            signed = {int(seq) for (seq,) in rows}
            clear = [seq for seq in range(head - 2, start + 1, -1) if not signed & {seq - 1, seq, seq + 1}]
            if clear:
                break
        else:
            pytest.fail(f"checkpoints on every candidate event after {ATTEMPTS} rounds: {sorted(signed)}")
    yield clear[0]
    assert verify(mesh)["ok"], "a tamper case did not put the table back"


async def signed_up_to(mesh: RunningMesh, head: int) -> None:
    deadline = time.monotonic() + 20
    while verify(mesh).get("last_signed_seq") != head:
        assert time.monotonic() < deadline, "no checkpoint covered the head"
        await asyncio.sleep(0.5)


async def row(mesh: RunningMesh, seq: int) -> tuple[Any, ...]:
    (found,) = await mesh.db_execute("api", f"SELECT {COLUMNS} FROM audit_events WHERE seq = $1", seq)
    return found


async def insert_row(mesh: RunningMesh, values: tuple[Any, ...]) -> None:
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await mesh.db_execute("api", f"INSERT INTO audit_events ({COLUMNS}) VALUES ({placeholders})", *values)


async def renumber(mesh: RunningMesh, first: int, delta: int) -> None:
    """seq += delta for every seq >= first, in two steps (no transient key clash)."""
    await mesh.db_execute("api", "UPDATE audit_events SET seq = seq + $1 WHERE seq >= $2", SHIFT, first)
    await mesh.db_execute("api", "UPDATE audit_events SET seq = seq - $1 WHERE seq >= $2", SHIFT - delta, first + SHIFT)


def findings(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [(f["kind"], f["seq"]) for f in report["findings"]]


async def test_an_intact_trail_verifies_and_says_so(mesh: RunningMesh, trail: int) -> None:
    done = carevault(mesh, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INTACT" in done.stdout and "checkpoint(s) verified" in done.stdout


async def test_an_altered_event_is_named(mesh: RunningMesh, trail: int) -> None:
    original = await row(mesh, trail)
    await mesh.db_execute("api", "UPDATE audit_events SET principal = 'mallory' WHERE seq = $1", trail)
    try:
        done = carevault(mesh, "audit", "verify")
        assert done.returncode == 1
        assert f"ALTERED: seq {trail}: altered" in done.stdout
        assert findings(verify(mesh)) == [("altered", trail)]
    finally:
        await mesh.db_execute("api", "UPDATE audit_events SET principal = $1 WHERE seq = $2", original[11], trail)


async def test_a_deleted_event_is_named(mesh: RunningMesh, trail: int) -> None:
    original = await row(mesh, trail)
    await mesh.db_execute("api", "DELETE FROM audit_events WHERE seq = $1", trail)
    try:
        assert findings(verify(mesh)) == [("deleted", trail)]
        await renumber(mesh, trail + 1, -1)  # and the gap hidden
        try:
            report = verify(mesh)
            deleted = [f["message"] for f in report["findings"] if (f["kind"], f["seq"]) == ("deleted", trail)]
            assert deleted and f"deleted before seq {trail}" in deleted[0], report["findings"]
        finally:
            await renumber(mesh, trail, +1)
    finally:
        await insert_row(mesh, original)


async def test_an_inserted_event_is_named(mesh: RunningMesh, trail: int) -> None:
    before = await row(mesh, trail - 1)
    forged = EventContent(
        event_id="00000000-0000-4000-8000-00000000f00d",
        recorded_at=datetime.now(UTC),
        tenant="dev",
        event="fhir.read",
        category="health-data",
        action="R",
        outcome=200,
        resource_type="Observation",
        resource_id=None,
        patient=None,
        principal="alibi",
        client_id=None,
        request_id=None,
        purpose=None,
        legal_basis=None,
        details="{}",
    )

    def as_row(seq: int, prev_hash: str) -> tuple[Any, ...]:
        values = [getattr(forged, name) for name in EventContent.__dataclass_fields__]
        return (seq, *values, prev_hash, event_hash(prev_hash, seq, forged))

    # In the middle: the following events renumbered to make room, the forged one chained to its predecessor.
    await renumber(mesh, trail, +1)
    await insert_row(mesh, as_row(trail, before[-1]))
    try:
        assert ("inserted", trail) in findings(verify(mesh))
    finally:
        await mesh.db_execute("api", "DELETE FROM audit_events WHERE seq = $1", trail)
        await renumber(mesh, trail + 1, -1)
    # At the end, past the chain head.
    head = await last_seq(mesh)
    last = await row(mesh, head)
    await insert_row(mesh, as_row(head + 1, last[-1]))
    try:
        assert findings(verify(mesh)) == [("inserted", head + 1)]
    finally:
        await mesh.db_execute("api", "DELETE FROM audit_events WHERE seq = $1", head + 1)


async def test_reordered_events_are_named(mesh: RunningMesh, trail: int) -> None:
    first, second = trail - 1, trail + 1

    async def swap() -> None:
        await mesh.db_execute("api", "UPDATE audit_events SET seq = -1 WHERE seq = $1", first)
        await mesh.db_execute("api", "UPDATE audit_events SET seq = $1 WHERE seq = $2", first, second)
        await mesh.db_execute("api", "UPDATE audit_events SET seq = $1 WHERE seq = -1", second)

    await swap()
    try:
        report = verify(mesh)
        assert findings(report) == [("reordered", first)]
        assert f"seq {first} and seq {second}: swapped" in report["findings"][0]["message"]
    finally:
        await swap()


async def test_a_rewritten_chain_is_caught_by_the_signed_checkpoints(mesh: RunningMesh, trail: int) -> None:
    """Someone who alters an event and recomputes every later hash leaves a chain that
    is consistent in itself, but no longer the one the checkpoints signed."""
    head = await last_seq(mesh)
    rows = [await row(mesh, seq) for seq in range(trail, head + 1)]
    prev = (await row(mesh, trail - 1))[-1]
    try:
        for number, values in enumerate(rows):
            fields = dict(zip(EventContent.__dataclass_fields__, values[1:-2], strict=True))
            if isinstance(fields["recorded_at"], str):  # SQLite, read raw
                fields["recorded_at"] = datetime.fromisoformat(fields["recorded_at"])
            if number == 0:
                fields["principal"] = "mallory"
            content = EventContent(**fields)  # type: ignore[arg-type]
            new_hash = event_hash(prev, values[0], content)
            await mesh.db_execute(
                "api",
                "UPDATE audit_events SET principal = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                content.principal,
                prev,
                new_hash,
                values[0],
            )
            prev = new_hash
        await mesh.db_execute("api", "UPDATE audit_chain_head SET hash = $1 WHERE id = 1", prev)
        kinds = {kind for kind, _ in findings(verify(mesh))}
        assert kinds == {"checkpoint"}, findings(verify(mesh))
    finally:
        for values in rows:
            await mesh.db_execute(
                "api",
                "UPDATE audit_events SET principal = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                values[11],
                values[-2],
                values[-1],
                values[0],
            )
        await mesh.db_execute("api", "UPDATE audit_chain_head SET hash = $1 WHERE id = 1", rows[-1][-1])


async def test_verify_refuses_without_reading_a_forged_checkpoint(mesh: RunningMesh, trail: int) -> None:
    (cp,) = await mesh.db_execute("api", "SELECT seq, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
    forged = bytes(64)
    await mesh.db_execute("api", "UPDATE audit_checkpoints SET signature = $1 WHERE seq = $2", forged, cp[0])
    try:
        assert ("checkpoint", cp[0]) in findings(verify(mesh))
    finally:
        await mesh.db_execute("api", "UPDATE audit_checkpoints SET signature = $1 WHERE seq = $2", bytes(cp[1]), cp[0])
