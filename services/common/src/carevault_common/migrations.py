"""The body of every service's Alembic ``env.py``: async engines, a lock timeout
on PostgreSQL (a migration must not queue behind live traffic forever), and
batch mode on SQLite (which cannot ALTER most things in place)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

LOCK_TIMEOUT = "5s"


def _run(connection: Connection, target_metadata: MetaData, version_table: str) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if not sqlite:
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        version_table=version_table,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str, target_metadata: MetaData, version_table: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run, target_metadata, version_table)
        await connection.commit()
    await engine.dispose()


def run_env(target_metadata: MetaData, version_table: str) -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_run_async(url, target_metadata, version_table))
    else:  # called from inside a running loop (tests): run in a worker thread
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool_:
            pool_.submit(asyncio.run, _run_async(url, target_metadata, version_table)).result()
