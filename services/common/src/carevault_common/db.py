"""Database engine and session factories (SQLAlchemy 2 async) and migrations.

One request, one transaction: :func:`session_scope` commits or rolls back at the
edge; service code only flushes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def database_error_code(exc: BaseException) -> str | None:
    """The driver's code for a database failure, for logs: SQLite's error name
    (``SQLITE_BUSY``) or PostgreSQL's SQLSTATE (``55P03``). Never the message, which
    can quote the statement's values."""
    driver_error = getattr(exc, "orig", None)
    code = getattr(driver_error, "sqlite_errorname", None) or getattr(driver_error, "sqlstate", None)
    return str(code) if code else None


_UNIQUE_VIOLATIONS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY", "23505"})


def is_unique_violation(exc: BaseException) -> bool:
    """A write that would have duplicated a key: on either backend, what two requests
    creating the same thing at once end in, the later one rolled back whole."""
    return database_error_code(exc) in _UNIQUE_VIOLATIONS


# SQLite's primary result codes (extended codes carry them in the low byte).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_PROTOCOL = 5, 6, 15
# An execution option of the engines write_sessions() makes; read by the SQLite "begin" hook.
_BEGIN_IMMEDIATE = "carevault_begin_immediate"


def is_sqlite_lock_conflict(exc: BaseException) -> bool:
    """SQLite refused a write because another connection held the database: a
    transaction that did not commit (SQLite commits whole or not at all), so it may
    be run again. SQLite answers so at once, without waiting out the busy timeout,
    when waiting could deadlock, e.g. a read snapshot that another writer has since
    moved past (``SQLITE_BUSY_SNAPSHOT``), and gives up on the write-ahead log's
    shared-memory locks after many quick tries under heavy contention
    (``SQLITE_PROTOCOL``)."""
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_PROTOCOL)


def create_engine(url: str, *, pool_size: int = 8, max_overflow: int = 0) -> AsyncEngine:
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers do not block the writer; synchronous=FULL: a committed
            # write survives a power cut (it never loses a write).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten, not left in free pages (erasure, docs/audit.md).
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            if connection.get_execution_options().get(_BEGIN_IMMEDIATE):
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def write_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for requests that read, decide, then write (a conditional update reads
    the current version, compares it, writes the next one).

    On SQLite their transaction takes the database's write lock at BEGIN (BEGIN
    IMMEDIATE, waiting out the busy timeout like any write), so what they read cannot
    change before they commit. Otherwise pysqlite starts the transaction only at the
    first write: the reads before it are not part of it, and two such requests at once
    decided on the same state, and the loser broke a constraint (a 500, where a 412 was
    due). Such a transaction must not wait on another session of the same database. On
    PostgreSQL the option does nothing: the code locks the rows it decides on there
    (``FOR UPDATE``)."""
    return session_factory(engine.execution_options(**{_BEGIN_IMMEDIATE: True}))


@asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A savepoint inside the session's transaction: what happens in it is undone alone
    if it fails, and commits or rolls back with the transaction otherwise.

    Use it instead of ``session.begin_nested()``. On SQLite, pysqlite opens the database
    transaction only at the first INSERT/UPDATE/DELETE; a SAVEPOINT before that opens
    the transaction itself, and its RELEASE then commits everything so far: the rest of
    the request is no longer atomic with it. Here the transaction is opened first, as
    a write transaction (BEGIN IMMEDIATE: a savepoint is taken to write, and a deferred
    read snapshot could not be upgraded once another writer committed)."""
    if session.get_bind().dialect.name == "sqlite":
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
    async with session.begin_nested():
        yield


async def forget_deleted_pages(engine: AsyncEngine) -> None:
    """After an erasure on SQLite: rebuild the database file (VACUUM), then checkpoint
    the write-ahead log and truncate it. ``secure_delete`` zeroes deleted rows, but a
    copy of a row that a b-tree rebalance moved earlier can linger in a page's unused
    space (a full-suite run found an erased id so); the rebuilt file holds only live
    rows, and no earlier page image stays in the -wal file. It costs a pass over the
    whole file, once per erasure. PostgreSQL: nothing to do here; dead rows go at the
    next VACUUM (see docs/audit.md)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM")
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


async def database_ready(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True


def run_migrations(migrations_dir: Path, database_url: str) -> None:
    """Upgrade the database to every head with the service's Alembic scripts
    (domains of one service may keep their own branch, e.g. api's ``audit`` and ``identity``)."""
    from alembic import command
    from alembic.config import Config

    _ensure_sqlite_dir(database_url) if is_sqlite(database_url) else None
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "heads")
