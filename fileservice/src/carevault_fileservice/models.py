"""All tables of fileservice: which opaque blob ids are complete, and their sizes.
Nothing here names a tenant, a patient or a file type."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carevault_common.db import metadata


class Base(DeclarativeBase):
    metadata = metadata()


class Blob(Base):
    __tablename__ = "blobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plaintext_size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
