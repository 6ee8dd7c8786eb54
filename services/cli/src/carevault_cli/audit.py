"""``carevault audit verify`` and ``carevault audit keygen``.

verify reads api's audit tables straight from the database, read-only, and checks
them with :class:`carevault_common.auditchain.ChainVerifier` and the checkpoint
public key. It does not ask api: a verification must not depend on the service
whose records it checks (api may be down, or what was compromised), and it needs
nothing but read access and a public key. The table definitions below mirror
api's models (services/api/tests/audit/test_cli_tables.py keeps them in step);
the hash format is the one shared module both use.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, MetaData, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from carevault_common.auditchain import (
    Anchor,
    ChainVerifier,
    Checkpoint,
    EventContent,
    LoggedCheckpoint,
    Report,
    StoredEvent,
)
from carevault_crypto.checkpoint import CheckpointVerifier, generate_checkpoint_signer
from carevault_crypto.export import checkpoint_signer_to_text, pseudonym_key_to_text
from carevault_crypto.pseudonym import PseudonymKey

PAGE = 5000
_metadata = MetaData()
_Seq = BigInteger().with_variant(Integer(), "sqlite")

AUDIT_EVENTS = Table(
    "audit_events",
    _metadata,
    Column("seq", _Seq, primary_key=True),
    Column("event_id", String(36)),
    Column("recorded_at", DateTime(timezone=True)),
    Column("tenant", String(64)),
    Column("event", String(64)),
    Column("category", String(32)),
    Column("action", String(1)),
    Column("outcome", Integer),
    Column("resource_type", String(64)),
    Column("resource_id", String(64)),
    Column("patient", String(64)),
    Column("principal", String(256)),
    Column("client_id", String(256)),
    Column("request_id", String(64)),
    Column("purpose", String(64)),
    Column("legal_basis", String(64)),
    Column("details", Text),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
)
AUDIT_CHAIN_HEAD = Table(
    "audit_chain_head", _metadata, Column("id", Integer, primary_key=True), Column("seq", _Seq), Column("hash", String(64))
)
AUDIT_CHECKPOINTS = Table(
    "audit_checkpoints",
    _metadata,
    Column("seq", _Seq, primary_key=True),
    Column("hash", String(64)),
    Column("signed_at", DateTime(timezone=True)),
    Column("key_id", String(64)),
    Column("signature", LargeBinary),
)
AUDIT_ANCHOR = Table("audit_anchor", _metadata, Column("id", Integer, primary_key=True), Column("seq", _Seq), Column("hash", String(64)))
CONTENT_FIELDS = [name for name in EventContent.__dataclass_fields__]


def _event(row: object) -> StoredEvent:
    mapping = row._mapping  # type: ignore[attr-defined]
    return StoredEvent(
        mapping["seq"], EventContent(**{name: mapping[name] for name in CONTENT_FIELDS}), mapping["prev_hash"], mapping["hash"]
    )


def read_logged_checkpoints(paths: Iterable[Path]) -> list[LoggedCheckpoint]:
    """``audit checkpoint`` lines of api's JSON logs (as shipped to the log store)."""
    found: list[LoggedCheckpoint] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if '"audit checkpoint"' not in line:
                continue
            entry = orjson.loads(line)
            if entry.get("msg") != "audit checkpoint":
                continue
            signature = base64.urlsafe_b64decode(entry["signature"] + "=" * (-len(entry["signature"]) % 4))
            found.append(LoggedCheckpoint(int(entry["audit_seq"]), datetime.fromisoformat(entry["signed_at"]), entry["key_id"], signature))
    return found


async def _events(conn: AsyncConnection, after: int) -> list[StoredEvent]:
    rows = await conn.execute(select(AUDIT_EVENTS).where(AUDIT_EVENTS.c.seq > after).order_by(AUDIT_EVENTS.c.seq).limit(PAGE))
    return [_event(row) for row in rows]


async def verify_database(
    database_url: str, public_keys: Iterable[CheckpointVerifier] | CheckpointVerifier | None, logged: Iterable[LoggedCheckpoint] = ()
) -> Report:
    """Verify api's audit tables. ``public_keys``: every checkpoint key the trail was
    signed with (the current one and, after a rotation, the earlier ones)."""
    if isinstance(public_keys, CheckpointVerifier):
        public_keys = [public_keys]
    keys = {k.key_id: k for k in public_keys or ()}
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            anchor_row = (await conn.execute(select(AUDIT_ANCHOR.c.seq, AUDIT_ANCHOR.c.hash))).first()
            anchor = Anchor(int(anchor_row.seq), anchor_row.hash) if anchor_row else None
            checkpoints = [
                Checkpoint(int(r.seq), r.hash, r.signed_at, r.key_id, bytes(r.signature))
                for r in await conn.execute(select(AUDIT_CHECKPOINTS).order_by(AUDIT_CHECKPOINTS.c.seq))
            ]

            def check(payload: bytes, signature: bytes, key_id: str) -> bool:
                key = keys.get(key_id)
                return key is not None and key.verify(payload, signature)

            verifier = ChainVerifier(
                anchor=anchor, checkpoints=checkpoints, check_signature=check if keys else None, logged_checkpoints=logged
            )
            last = anchor.seq if anchor else 0
            while True:  # until the head read after the events is not beyond them (appends go on meanwhile)
                page = await _events(conn, last)
                for event in page:
                    verifier.feed(event)
                    last = event.seq
                if len(page) == PAGE:
                    continue
                head = (await conn.execute(select(AUDIT_CHAIN_HEAD.c.seq, AUDIT_CHAIN_HEAD.c.hash).where(AUDIT_CHAIN_HEAD.c.id == 1))).one()
                if int(head.seq) <= last or not await _events(conn, last):
                    return verifier.finish(int(head.seq), head.hash)
    finally:
        await engine.dispose()


def render(report: Report, *, signed: bool) -> Iterator[str]:
    for finding in report.findings:
        yield f"{finding.kind.upper()}: {finding.message}"
    span = f"seq {report.first_seq}..{report.last_seq}" if report.events else "no events"
    yield f"{'INTACT' if report.ok else 'TAMPERED'}: {report.events} events ({span}), {len(report.findings)} finding(s)"
    if not signed:
        yield "no checkpoint public key given: signed checkpoints were not checked (use --public-key)"
    else:
        last = report.last_signed_seq
        yield f"{report.checkpoints_valid} checkpoint(s) verified; last signed seq {last if last is not None else '-'}"
        if report.unsigned_tail:
            yield f"{report.unsigned_tail} event(s) after the last signed checkpoint are protected by the hash chain only"


def cmd_verify(database_url: str, public_key_files: list[Path], log_files: list[Path], as_json: bool) -> int:
    public_keys = [CheckpointVerifier.from_text(path.read_text(encoding="utf-8")) for path in public_key_files]
    report = asyncio.run(verify_database(database_url, public_keys, read_logged_checkpoints(log_files)))
    if as_json:
        body = {
            "ok": report.ok,
            "events": report.events,
            "first_seq": report.first_seq,
            "last_seq": report.last_seq,
            "checkpoints_valid": report.checkpoints_valid,
            "last_signed_seq": report.last_signed_seq,
            "unsigned_tail": report.unsigned_tail,
            "findings": [{"kind": f.kind, "seq": f.seq, "message": f.message} for f in report.findings],
        }
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        for line in render(report, signed=bool(public_keys)):
            print(line)
    return 0 if report.ok else 1


def cmd_keygen(out: Path) -> int:
    """The checkpoint key pair and the pseudonym key, for Secrets (never overwritten)."""
    targets = [out / "checkpoint.key", out / "checkpoint.pub", out / "pseudonym.key"]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        print(f"carevault audit keygen: refusing to overwrite {', '.join(existing)}")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    signer = generate_checkpoint_signer()
    _write_private(targets[0], checkpoint_signer_to_text(signer))
    targets[1].write_text(signer.verifier().to_text(), encoding="utf-8")
    _write_private(targets[2], pseudonym_key_to_text(PseudonymKey.generate()))
    print(f"checkpoint key id {signer.key_id}: {targets[0]} (secret: api only), {targets[1]} (public: verifiers)")
    print(f"pseudonym key: {targets[2]} (secret: api, and the erasure replay)")
    return 0


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
