"""The revoked-token list: checked from memory, shared through the database (or
Redis), applied by other replicas within the refresh period, fail closed when stale."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.models import Base
from carevault_api.oauth.revocation import DatabaseRevocations, RedisRevocations, RevocationList, RevocationStore
from carevault_common.db import create_engine, session_factory
from carevault_common.errors import ServiceUnavailable


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'api.sqlite'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


async def _replicas(store_a: RevocationStore, store_b: RevocationStore, refresh: float) -> tuple[RevocationList, RevocationList]:
    a, b = RevocationList(store_a, refresh), RevocationList(store_b, refresh)
    await a.start()
    await b.start()
    return a, b


async def _applies_everywhere(a: RevocationList, b: RevocationList) -> None:
    jti = uuid.uuid4().hex
    assert not await a.is_revoked(jti) and not await b.is_revoked(jti)
    await a.revoke(jti, time.time() + 300)
    assert await a.is_revoked(jti), "the replica that revoked applies it at once"
    assert await b.is_revoked_now(jti), "introspection reads the store"
    started = time.monotonic()
    while not await b.is_revoked(jti):
        assert time.monotonic() - started < 3 * b.refresh_seconds, "another replica applies it within the refresh period"
        await asyncio.sleep(0.05)


async def test_database_list_is_shared_by_replicas(sessions: async_sessionmaker[AsyncSession]) -> None:
    a, b = await _replicas(DatabaseRevocations(sessions), DatabaseRevocations(sessions), 0.5)
    try:
        await _applies_everywhere(a, b)
    finally:
        await a.close()
        await b.close()


async def test_expired_entries_leave_the_list(sessions: async_sessionmaker[AsyncSession]) -> None:
    revocations = RevocationList(DatabaseRevocations(sessions), 0.5)
    await revocations.start()
    try:
        await revocations.revoke("soon-gone", time.time() + 0.3)
        await revocations.revoke("kept", time.time() + 300)
        await asyncio.sleep(0.5)
        await revocations.refresh()
        assert not await revocations.is_revoked("soon-gone")
        assert await revocations.is_revoked("kept")
    finally:
        await revocations.close()


class _Broken:
    """A store that answered once, then went away."""

    def __init__(self) -> None:
        self.up = True

    async def add(self, jti: str, expires_at: float) -> None:
        return None

    async def load(self, now: float) -> set[str]:
        if not self.up:
            raise ConnectionError("gone")
        return set()

    async def close(self) -> None:
        return None


async def test_a_stale_list_fails_closed() -> None:
    store = _Broken()
    revocations = RevocationList(store, 0.5)
    await revocations.start()
    try:
        assert not await revocations.is_revoked("x")
        store.up = False
        await asyncio.sleep(3 * 0.5 + 0.2)
        with pytest.raises(ServiceUnavailable):
            await revocations.is_revoked("x")
    finally:
        await revocations.close()


async def test_redis_list_is_shared_by_replicas() -> None:
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable")
    a, b = await _replicas(RedisRevocations(url), RedisRevocations(url), 0.5)
    try:
        await _applies_everywhere(a, b)
    finally:
        await a.close()
        await b.close()
