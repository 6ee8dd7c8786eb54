"""Dependencies of the keyservice routes (Annotated aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import session_scope


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # A write decides on what it read (a request still open, a package not yet there):
    # write_sessions keeps that true until it commits, on SQLite too.
    factory = request.app.state.sessions if request.method in ("GET", "HEAD") else request.app.state.write_sessions
    async with session_scope(factory) as session:
        yield session


# scope="function": commit before the response leaves, so a 2xx means the write is durable
# (the default scope would commit after the response is sent).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
