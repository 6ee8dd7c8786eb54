"""All tables of api."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carevault_common.db import metadata


class Base(DeclarativeBase):
    metadata = metadata()


# -- audit trail (carevault_api.audit) and erasure journal (carevault_api.erasure) ----------
# Table definitions are mirrored by `carevault audit verify` (services/cli), which reads
# them directly; services/api/tests/audit/test_cli_tables.py keeps the two in step.


class AuditEvent(Base):
    """One event of the hash-chained audit trail. Ids, codes and pseudonyms only:
    never health content, never a patient id in clear (``patient`` is a pseudonym)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_recorded", "tenant", "recorded_at"),
        Index("ix_audit_events_tenant_patient", "tenant", "patient", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tenant: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(1))
    outcome: Mapped[int | None] = mapped_column(Integer)
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    patient: Mapped[str | None] = mapped_column(String(64))
    principal: Mapped[str | None] = mapped_column(String(256))
    client_id: Mapped[str | None] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(64))
    legal_basis: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The one row every append locks (SELECT ... FOR UPDATE on PostgreSQL, the
    database write lock on SQLite): appends from every replica are serialised."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditCheckpoint(Base):
    """The chain head (seq, hash) signed with a key this database does not hold."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class AuditAnchor(Base):
    """Where the chain starts once events older than the retention period are
    pruned: a signed checkpoint's (seq, hash). At most one row."""

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    pruned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ErasureJournalEntry(Base):
    """An erased patient, as a pseudonym, kept apart from the data so that an
    erasure survives a restore of the data from an older backup (it is replayed)."""

    __tablename__ = "erasure_journal"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    request_id: Mapped[str | None] = mapped_column(String(64))


# The sign-in and break-glass tables share this Base (kept in their own modules); importing
# them here makes Base.metadata complete for whoever imports this module (Alembic, the
# migrations check).
from carevault_api import models_break_glass as _break_glass  # noqa: E402, F401
from carevault_api import models_identity as _identity  # noqa: E402, F401
