"""Fixtures of the api tests: api's database, migrated, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from carevault_api.config import MIGRATIONS_DIR
from carevault_common.db import run_migrations
from tests.support import POSTGRES_URL, require_postgres


async def _recreate(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def api_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated api database; its SQLAlchemy URL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'api.sqlite'}"
    else:
        require_postgres()
        name = f"cvapitest_{os.getpid()}"
        asyncio.run(_recreate(name))
        url = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    run_migrations(MIGRATIONS_DIR, url)
    return url
