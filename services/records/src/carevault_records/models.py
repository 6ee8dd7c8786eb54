"""All tables of records.

Patient-compartment bodies are stored only as sealed blobs (carevault_crypto);
search tokens of patient data are blind indexes. What is readable here without
a patient key: ids, versions, timestamps, resource types, and the tenant
directory (Organization, Practitioner...), which is not patient data.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carevault_common.db import metadata


class Base(DeclarativeBase):
    metadata = metadata()


class Patient(Base):
    """The key material of one patient: what checks and unwraps their key, never the key."""

    __tablename__ = "patients"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_version: Mapped[int] = mapped_column(Integer)
    verifier: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_keyring: Mapped[bytes] = mapped_column(LargeBinary)
    # Which set of hosting-doctor keys the current key is escrowed to.
    escrow_keyset: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Resource(Base):
    """The current version of every resource (the head of its history)."""

    __tablename__ = "resources"
    __table_args__ = (
        Index("ix_resources_patient", "tenant", "patient_id", "resource_type", "last_updated"),
        Index("ix_resources_type_updated", "tenant", "resource_type", "last_updated"),
    )

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(Boolean)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ResourceVersion(Base):
    """Every version. ``body`` is a sealed blob for patient data, JSON for directory data,
    empty for a deletion."""

    __tablename__ = "resource_versions"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    deleted: Mapped[bool] = mapped_column(Boolean)
    encrypted: Mapped[bool] = mapped_column(Boolean)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class SearchToken(Base):
    """Search terms of current versions: blind indexes for patient data, plain
    normalised values for directory data (``patient_id`` empty)."""

    __tablename__ = "search_tokens"
    __table_args__ = (Index("ix_search_tokens_lookup", "tenant", "patient_id", "resource_type", "param", "token"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    param: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(256), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))


class IdempotencyRecord(Base):
    """The first answer to a POST with an Idempotency-Key, without its content:
    status and locations only (a replay re-reads the resources)."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ErasureTombstone(Base):
    """A resource erased with its patient (GDPR Art. 17): later reads get 410.

    Holds no id in clear: ``digest`` is SHA-256 over (tenant, type, id), so only
    someone who already knows an id can learn that it was erased.
    """

    __tablename__ = "erasure_tombstones"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingUpload(Base):
    """A Binary content upload in progress: its blob id from ``/files/prepare`` until
    the Binary that points at it commits (the row is deleted in that transaction).

    A row that outlives the longest upload marks an orphan blob (api died between
    storing the content and committing the Binary): the sweep (api, on a timer)
    claims it (``abandoned_at``), deletes the blob in fileservice, then the row.
    It names no tenant, patient or Binary: a blob id and when it was handed out.
    """

    __tablename__ = "pending_uploads"

    blob_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    abandoned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
