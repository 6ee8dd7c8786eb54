"""All tables of records."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from carevault_common.db import metadata


class Base(DeclarativeBase):
    metadata = metadata()
