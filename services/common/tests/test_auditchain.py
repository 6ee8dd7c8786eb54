"""The audit chain verifier names every kind of tampering, and where."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from carevault_common.auditchain import (
    GENESIS_HASH,
    Anchor,
    ChainVerifier,
    Checkpoint,
    EventContent,
    LoggedCheckpoint,
    StoredEvent,
    checkpoint_payload,
    event_hash,
    format_time,
)
from carevault_crypto.checkpoint import generate_checkpoint_signer

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SIGNER = generate_checkpoint_signer()


def content(i: int, principal: str = "dr-house") -> EventContent:
    return EventContent(
        event_id=f"00000000-0000-4000-8000-{i:012d}",
        recorded_at=T0 + timedelta(seconds=i),
        tenant="t1",
        event="fhir.read",
        category="health-data",
        action="R",
        outcome=200,
        resource_type="Observation",
        resource_id=f"obs-{i}",
        patient="ab" * 16,
        principal=principal,
        client_id=None,
        request_id=f"req-{i}",
        purpose="TREAT",
        legal_basis=None,
        details="{}",
    )


def chain(n: int, start: Anchor | None = None) -> list[StoredEvent]:
    events, prev = [], start.hash if start else GENESIS_HASH
    first = start.seq + 1 if start else 1
    for seq in range(first, first + n):
        c = content(seq)
        h = event_hash(prev, seq, c)
        events.append(StoredEvent(seq, c, prev, h))
        prev = h
    return events


def checkpoint(event: StoredEvent, signer=SIGNER) -> Checkpoint:  # type: ignore[no-untyped-def]
    at = T0 + timedelta(hours=1)
    return Checkpoint(event.seq, event.hash, at, signer.key_id, signer.sign(checkpoint_payload(event.seq, event.hash, at)))


def check(payload: bytes, signature: bytes, key_id: str) -> bool:
    return key_id == SIGNER.key_id and SIGNER.verifier().verify(payload, signature)


def verify(events: list[StoredEvent], checkpoints: list[Checkpoint] = (), head: int | None = None, anchor: Anchor | None = None):  # type: ignore[no-untyped-def,assignment]
    verifier = ChainVerifier(anchor=anchor, checkpoints=checkpoints, check_signature=check)
    for e in sorted(events, key=lambda e: e.seq):
        verifier.feed(e)
    last = events[-1] if events else None
    head_seq = head if head is not None else (max(e.seq for e in events) if events else 0)
    return verifier.finish(head_seq, last.hash if last and head is None else None)


def kinds(report) -> list[tuple[str, int | None]]:  # type: ignore[no-untyped-def]
    return [(f.kind, f.seq) for f in report.findings]


def rehash_from(events: list[StoredEvent], index: int) -> list[StoredEvent]:
    """What an attacker does to hide a change: recompute every hash from ``index`` on."""
    out = events[:index]
    prev = out[-1].hash if out else GENESIS_HASH
    for e in events[index:]:
        h = event_hash(prev, e.seq, e.content)
        out.append(StoredEvent(e.seq, e.content, prev, h))
        prev = h
    return out


def test_an_intact_chain_verifies_with_its_checkpoints() -> None:
    events = chain(50)
    report = verify(events, [checkpoint(events[19]), checkpoint(events[39])])
    assert report.ok, report.findings
    assert (report.events, report.checkpoints_valid, report.last_signed_seq, report.unsigned_tail) == (50, 2, 40, 10)


def test_canonical_form_is_stable() -> None:
    c = content(1)
    assert format_time(datetime(2026, 1, 1, 12, 0)) == "2026-01-01T12:00:00.000000Z"  # naive is UTC
    assert c.canonical(1) == dataclasses.replace(c, recorded_at=c.recorded_at.astimezone(timezone(timedelta(hours=2)))).canonical(1)
    assert b'"seq":1' in c.canonical(1) and event_hash(GENESIS_HASH, 1, c) != event_hash(GENESIS_HASH, 2, c)


def test_altered_event_is_named() -> None:
    events = chain(10)
    events[4] = dataclasses.replace(events[4], content=content(5, principal="mallory"))
    assert kinds(verify(events)) == [("altered", 5)]


def test_altered_event_with_recomputed_hash_is_named() -> None:
    events = chain(10)
    forged = content(5, principal="mallory")
    events[4] = StoredEvent(5, forged, events[4].prev_hash, event_hash(events[4].prev_hash, 5, forged))
    assert kinds(verify(events)) == [("altered", 5)]


def test_rewriting_the_whole_rest_of_the_chain_is_caught_by_a_checkpoint() -> None:
    events = chain(10)
    cp = checkpoint(events[7])
    events[4] = dataclasses.replace(events[4], content=content(5, principal="mallory"))
    events = rehash_from(events, 4)
    report = verify(events, [cp])
    assert kinds(report) == [("checkpoint", 8)]
    assert "rewritten" in report.findings[0].message


def test_deleted_event_is_named() -> None:
    events = chain(10)
    del events[6]
    assert kinds(verify(events)) == [("deleted", 7)]


def test_deleted_event_with_renumbering_is_named() -> None:
    events = chain(10)
    del events[6]
    events = [dataclasses.replace(e, seq=e.seq - 1) if e.seq > 7 else e for e in events]
    report = verify(events, head=9)
    assert kinds(report) == [("deleted", 7)]
    assert "renumbered by -1" in report.findings[0].message


def test_deleted_tail_is_named_by_the_head_and_the_checkpoints() -> None:
    events = chain(10)
    cp = checkpoint(events[9])
    assert kinds(verify(events[:8], [cp], head=10)) == [("deleted", 9), ("deleted", 9)]


def test_inserted_event_with_renumbering_is_named() -> None:
    events = chain(10)
    forged = content(99, principal="mallory")
    inserted = StoredEvent(5, forged, events[3].hash, event_hash(events[3].hash, 5, forged))
    shifted = [dataclasses.replace(e, seq=e.seq + 1) if e.seq >= 5 else e for e in events]
    report = verify([*shifted, inserted], head=11)
    assert kinds(report) == [("inserted", 5)]
    assert "seq 6..11 renumbered by +1" in report.findings[0].message


def test_inserted_event_between_two_is_named() -> None:
    # Inserted with its own seq (the later events left in place, only the link fixed up).
    events = chain(10)
    forged = content(99, principal="mallory")
    events = [dataclasses.replace(e, seq=e.seq + 1) if e.seq >= 5 else e for e in events]
    events = rehash_from([*events[:4], StoredEvent(5, forged, events[3].hash, ""), *events[4:]], 4)
    assert kinds(verify(events)) == []  # undetectable by the chain alone once rehashed...
    cp = checkpoint(chain(10)[7])  # ...but a checkpoint signed before the insertion names it
    assert kinds(verify(events, [cp])) == [("checkpoint", 8)]


def test_event_appended_after_the_head_is_named() -> None:
    events = chain(10)
    forged = content(11, principal="mallory")
    events.append(StoredEvent(11, forged, events[-1].hash, event_hash(events[-1].hash, 11, forged)))
    assert kinds(verify(events, head=10)) == [("inserted", 11)]


@pytest.mark.parametrize(("a", "b"), [(3, 4), (3, 6), (2, 9)])
def test_reordered_events_are_named(a: int, b: int) -> None:
    events = chain(10)
    first, second = events[a - 1], events[b - 1]
    events[a - 1], events[b - 1] = dataclasses.replace(second, seq=a), dataclasses.replace(first, seq=b)
    report = verify(events)
    assert kinds(report) == [("reordered", a)]
    assert f"seq {a} and seq {b}: swapped" in report.findings[0].message


def test_a_forged_checkpoint_is_named() -> None:
    events = chain(5)
    other = generate_checkpoint_signer()
    assert kinds(verify(events, [checkpoint(events[2], other)])) == [("checkpoint", 3)]
    good = checkpoint(events[2])
    tampered = dataclasses.replace(good, hash=events[3].hash, seq=4)
    assert kinds(verify(events, [tampered])) == [("checkpoint", 4)]


def pruned(full: list[StoredEvent], up_to: int) -> list[StoredEvent]:
    """The chain after pruning: events up to ``up_to`` gone, audit.pruned appended."""
    last = full[-1]
    c = dataclasses.replace(content(len(full) + 1), event="audit.pruned", details=f'{{"events":{up_to},"up_to_seq":{up_to}}}')
    return [*full[up_to:], StoredEvent(last.seq + 1, c, last.hash, event_hash(last.hash, last.seq + 1, c))]


def test_a_pruned_chain_verifies_from_its_signed_anchor() -> None:
    full = chain(20)
    anchor = Anchor(10, full[9].hash)
    rest = pruned(full, 10)
    assert verify(rest, [checkpoint(full[9])], anchor=anchor).ok
    # An anchor no signed checkpoint vouches for (someone deleted the start) is named.
    assert kinds(verify(rest, [], anchor=anchor)) == [("anchor", 10)]
    # So is a start cut at a checkpoint without the audit.pruned event retention writes.
    assert kinds(verify(full[10:], [checkpoint(full[9])], anchor=anchor)) == [("anchor", 10)]


def test_checkpoints_from_the_log_stream_catch_a_rewrite_even_without_the_database_ones() -> None:
    events = chain(10)
    cp = checkpoint(events[7])
    logged = LoggedCheckpoint(cp.seq, cp.signed_at, cp.key_id, cp.signature)
    verifier = ChainVerifier(check_signature=check, logged_checkpoints=[logged])
    for e in events:
        verifier.feed(e)
    assert verifier.finish(10).ok and verifier.report.checkpoints_valid == 1
    events[2] = dataclasses.replace(events[2], content=content(3, principal="mallory"))
    verifier = ChainVerifier(check_signature=check, logged_checkpoints=[logged])
    for e in rehash_from(events, 2):
        verifier.feed(e)
    assert kinds(verifier.finish(10)) == [("checkpoint", 8)]


def test_verification_runs_in_a_bounded_window() -> None:
    events = chain(300)
    verifier = ChainVerifier(window=16)
    for e in events:
        verifier.feed(e)
    assert verifier.finish(300).ok
    assert len(verifier._origin) <= 16
