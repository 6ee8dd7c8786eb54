"""All tables of keyservice. It stores wrapped keys only, never a patient key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from carevault_common.db import metadata


class Base(DeclarativeBase):
    metadata = metadata()


class EscrowPackage(Base):
    """A patient key sealed (HPKE) to one hosting-doctor public key."""

    __tablename__ = "escrow_packages"
    __table_args__ = (UniqueConstraint("tenant", "patient_id", "key_version", "doctor_key_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    key_version: Mapped[int] = mapped_column(Integer)
    doctor_key_id: Mapped[str] = mapped_column(String(64))
    package: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
