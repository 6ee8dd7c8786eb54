"""``savepoint`` keeps a request atomic on SQLite as on PostgreSQL.

With pysqlite's own transaction handling, ``session.begin_nested()`` before the
transaction's first write opened the transaction with the SAVEPOINT, and its RELEASE
committed it: a request that failed afterwards had still written what the savepoint
held (the first test fails with ``begin_nested`` in place of ``savepoint``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from carevault_common.db import create_engine, savepoint, session_factory, session_scope


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'savepoint.db'}")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE item (name TEXT PRIMARY KEY)")
    try:
        yield engine
    finally:
        await engine.dispose()


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [row[0] for row in await conn.execute(text("SELECT name FROM item ORDER BY name"))]


class RequestFailed(Exception):
    pass


async def _request_failing_after_a_savepoint(engine: AsyncEngine) -> None:
    async with session_scope(session_factory(engine)) as session:
        await session.execute(text("SELECT count(*) FROM item"))  # reads first, as requests do
        async with savepoint(session):
            await session.execute(text("INSERT INTO item VALUES ('first')"))
        raise RequestFailed


async def test_a_request_that_fails_after_a_savepoint_writes_nothing(engine: AsyncEngine) -> None:
    with pytest.raises(RequestFailed):
        await _request_failing_after_a_savepoint(engine)
    assert await _names(engine) == []


async def _failing_part(session: AsyncSession) -> None:
    async with savepoint(session):
        await session.execute(text("INSERT INTO item VALUES ('undone')"))
        raise RequestFailed


async def test_a_failed_savepoint_is_undone_alone(engine: AsyncEngine) -> None:
    async with session_scope(session_factory(engine)) as session:
        async with savepoint(session):
            await session.execute(text("INSERT INTO item VALUES ('kept')"))
        with pytest.raises(RequestFailed):
            await _failing_part(session)
        await session.execute(text("INSERT INTO item VALUES ('after')"))
    assert await _names(engine) == ["after", "kept"]
