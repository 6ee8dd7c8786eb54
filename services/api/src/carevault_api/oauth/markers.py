"""One-time markers for api (client-assertion jti, revoked access-token ids):
Redis when configured, shared by every replica; otherwise api's database,
which every replica shares too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.models_identity import UsedMarker
from carevault_common.db import session_scope
from carevault_common.replay import RedisReplayCache, ReplayCache


class DatabaseMarkers:
    """Each marker is committed in its own short transaction, so that a replica
    seeing it a moment later finds it whatever the request does afterwards."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], namespace: str) -> None:
        self.sessions, self.namespace = sessions, namespace
        self._writes = 0

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        now = datetime.now(UTC)
        full = f"{self.namespace}:{key}"
        try:
            async with session_scope(self.sessions) as session:
                existing = await session.get(UsedMarker, full)
                if existing is not None:
                    if _aware(existing.expires_at) > now:
                        return False
                    await session.delete(existing)
                    await session.flush()
                session.add(UsedMarker(key=full, expires_at=now + timedelta(seconds=ttl_seconds)))
                self._writes += 1
                if self._writes % 500 == 0:
                    await session.execute(delete(UsedMarker).where(UsedMarker.expires_at < now))
        except IntegrityError:
            return False  # another replica recorded it first
        return True

    async def seen(self, key: str) -> bool:
        async with session_scope(self.sessions) as session:
            result = await session.execute(
                select(UsedMarker.key).where(UsedMarker.key == f"{self.namespace}:{key}", UsedMarker.expires_at > datetime.now(UTC))
            )
            return result.first() is not None

    async def close(self) -> None:
        return None


def build_markers(redis_url: str, sessions: async_sessionmaker[AsyncSession], namespace: str) -> ReplayCache:
    if redis_url:
        return RedisReplayCache(redis_url, f"carevault:api:{namespace}")
    return DatabaseMarkers(sessions, namespace)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
