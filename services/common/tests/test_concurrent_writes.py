"""Requests that read, decide and then write stay correct on SQLite, the embedded
default: ``write_sessions`` hold the write lock from BEGIN, and a transaction SQLite
turns away for another writer is answered 503 with a retry, never 500. A duplicate
key (two requests creating the same thing at once) is 409 on both backends.

Found by two concurrent PUTs with the same If-Match on records: pysqlite began the
transaction only at the first write, both requests read version 1, and the loser
broke the version's primary key (a 500 where FHIR asks for 412)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from carevault_common.app import attach_database, build_app
from carevault_common.db import create_engine, session_factory, session_scope, write_sessions
from carevault_common.settings import DatabaseSettings


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writes.db'}")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE head (version INTEGER NOT NULL)")
        await conn.exec_driver_sql("CREATE TABLE versions (version INTEGER PRIMARY KEY)")
        await conn.exec_driver_sql("INSERT INTO head VALUES (1)")
        await conn.exec_driver_sql("INSERT INTO versions VALUES (1)")
    try:
        yield engine
    finally:
        await engine.dispose()


async def _conditional_update(sessions: async_sessionmaker[AsyncSession], expected: int, both_read: asyncio.Barrier | None = None) -> bool:
    """As records' update: read the current version, compare, write the next one.
    ``both_read``: wait until the other request has read too (without the write lock,
    nothing else would order them; with it, the other request is still waiting to
    begin, so the pause is a sleep)."""
    async with session_scope(sessions) as session:
        current = (await session.execute(text("SELECT version FROM head"))).scalar_one()
        if current != expected:
            return False  # 412
        if both_read is None:
            await asyncio.sleep(0.05)  # the other request would read meanwhile, were it not waiting
        else:
            await both_read.wait()
        await session.execute(text("INSERT INTO versions VALUES (:v)"), {"v": current + 1})
        await session.execute(text("UPDATE head SET version = :v"), {"v": current + 1})
    return True


async def test_two_conditional_updates_at_once_one_wins_the_other_is_told(engine: AsyncEngine) -> None:
    answers = await asyncio.gather(*(_conditional_update(write_sessions(engine), expected=1) for _ in range(2)))
    assert sorted(answers) == [False, True]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT version FROM versions ORDER BY version"))).scalars().all() == [1, 2]


async def test_without_the_write_lock_both_decide_on_the_same_version(engine: AsyncEngine) -> None:
    """What write_sessions prevents: with plain sessions the second insert breaks the key."""
    both_read = asyncio.Barrier(2)
    answers = await asyncio.gather(
        *(_conditional_update(session_factory(engine), expected=1, both_read=both_read) for _ in range(2)), return_exceptions=True
    )
    assert any(isinstance(answer, Exception) for answer in answers)


def database_app(database_url: str) -> FastAPI:
    """An app wired as every service's is: the database attached in its lifespan, which
    runs after the app has started taking ASGI calls (a handler added only then would
    never be used). Driven through TestClient, which runs the lifespan as uvicorn does."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = attach_database(app, DatabaseSettings(database_url=database_url))
        yield
        await engine.dispose()

    return build_app("test", lifespan)


def test_a_transaction_sqlite_turns_away_is_a_503_that_changed_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    other_process = sqlite3.connect(path, check_same_thread=False)
    other_process.execute("PRAGMA journal_mode=WAL")
    other_process.execute("CREATE TABLE item (name TEXT)")
    other_process.commit()
    app = database_app(f"sqlite+aiosqlite:///{path}")

    @app.post("/fhir/Item")
    async def create(request: Request) -> dict[str, str]:
        async with session_scope(request.app.state.sessions) as session:
            conn = await session.connection()
            await conn.exec_driver_sql("BEGIN")  # a read transaction, as a deferred one is
            await conn.exec_driver_sql("SELECT count(*) FROM item")
            other_process.execute("BEGIN IMMEDIATE")  # another writer, now
            await conn.exec_driver_sql("INSERT INTO item VALUES ('x')")  # SQLite refuses at once
        return {}

    with TestClient(app) as client:
        answer = client.post("/fhir/Item")
    other_process.rollback()
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["issue"][0]["details"]["coding"][0]["code"] == "database-busy"
    assert other_process.execute("SELECT count(*) FROM item").fetchone() == (0,)
    other_process.close()


def test_a_duplicate_key_from_a_concurrent_create_is_a_409_that_wrote_nothing(database_url: str) -> None:
    """As two admins creating the same username at once: both checked, neither found
    it, the second insert breaks the unique key."""
    app = database_app(database_url)
    table = f"name_{uuid.uuid4().hex[:8]}"

    @app.post("/setup")
    async def setup(request: Request) -> dict[str, str]:
        async with session_scope(request.app.state.sessions) as session:
            await session.execute(text(f"CREATE TABLE {table} (name TEXT PRIMARY KEY, which TEXT)"))
        return {}

    @app.post("/admin/names")
    async def create(request: Request) -> dict[str, str]:
        async with session_scope(request.app.state.sessions) as session:
            await session.execute(text(f"INSERT INTO {table} VALUES ('jdoe', 'first')"))
            await session.execute(text(f"INSERT INTO {table} VALUES ('jdoe', 'second')"))
        return {}

    @app.delete("/setup")
    async def left_and_teardown(request: Request) -> dict[str, int]:
        async with session_scope(request.app.state.sessions) as session:
            left = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            await session.execute(text(f"DROP TABLE {table}"))
        return {"left": left}

    with TestClient(app) as client:
        assert client.post("/setup").status_code == 200
        answer = client.post("/admin/names")
        left = client.delete("/setup").json()["left"]
    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("/concurrent-write")
    assert left == 0  # the request's first insert went with it


def test_a_request_that_finds_every_pooled_connection_in_use_is_a_503(tmp_path: Path) -> None:
    """A real pool of one connection, and a request that holds it while asking for a
    second: SQLAlchemy's pool times out; the client is told to retry, not 500."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    app = database_app(url)

    @app.get("/items")
    async def items() -> dict[str, str]:
        one_connection = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
        try:
            async with one_connection.connect(), one_connection.connect():
                return {}
        finally:
            await one_connection.dispose()

    with TestClient(app) as client:
        answer = client.get("/items")
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["type"].endswith("/database-busy")
