"""Fixtures of the shared library's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import require_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a SQLite file, or the test PostgreSQL server
    (tests there make their own tables with unique names, or temporary ones)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return require_postgres().replace("postgresql://", "postgresql+asyncpg://", 1)
