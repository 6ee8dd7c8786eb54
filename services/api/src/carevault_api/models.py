"""All tables of api."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from carevault_common.db import metadata


class Base(DeclarativeBase):
    metadata = metadata()


# The sign-in tables share this Base (kept in their own module); importing them here makes
# Base.metadata complete for whoever imports this module (Alembic, the migrations check).
from carevault_api import models_identity as _identity  # noqa: E402, F401
