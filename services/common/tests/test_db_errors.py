"""What a database failure is called in the logs: the driver's code, never its
message (which can quote the statement's values)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from carevault_common.db import create_engine, database_error_code, is_sqlite_lock_conflict


async def test_a_failure_is_named_by_its_code_and_does_not_quote_the_statement(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TEMPORARY TABLE item (name TEXT PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO item VALUES ('Jane Doe')"))
            with pytest.raises(DBAPIError) as failure:
                await conn.execute(text("INSERT INTO item VALUES ('Jane Doe')"))
    finally:
        await engine.dispose()
    code = database_error_code(failure.value)
    assert code in ("SQLITE_CONSTRAINT_PRIMARYKEY", "23505")
    assert "Jane" not in str(code)
    assert not is_sqlite_lock_conflict(failure.value)  # only a lock conflict is run again


def test_what_is_not_a_database_failure_has_no_code() -> None:
    assert database_error_code(ValueError("no")) is None
    assert not is_sqlite_lock_conflict(ValueError("no"))
