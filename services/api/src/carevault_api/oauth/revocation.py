"""Revoked access tokens (RFC 7009), by token id (``jti``), until they expire.

Checking revocation must not cost a database or Redis round trip per request.
Each api replica keeps the whole list in memory (it is short: explicitly
revoked tokens, each only until its ``exp``, five minutes by default) and a
request looks only there:

- a revocation made through this replica applies to it at once;
- every replica reloads the list every ``refresh_seconds``
  (``API_REVOCATION_REFRESH_SECONDS``, 5 s by default) in the background, so a
  revocation made through another replica applies everywhere within that bound
  (plus the time of one query);
- if the list could not be reloaded for three periods (database or Redis
  unreachable), a check reloads it first and fails closed (503) when it cannot.

Storage, shared by every replica: a Redis sorted set scored by expiry when
``API_REDIS_URL`` is set, otherwise rows of ``used_markers`` in api's database
(namespace ``revoked:at:``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.models_identity import UsedMarker
from carevault_common.db import session_scope
from carevault_common.errors import ServiceUnavailable

logger = logging.getLogger("carevault.api.revocation")
_PREFIX = "revoked:at:"


class RevocationStore(Protocol):
    async def add(self, jti: str, expires_at: float) -> None: ...

    async def load(self, now: float) -> set[str]:
        """The ids of revoked tokens that have not expired yet."""
        ...

    async def close(self) -> None: ...


class DatabaseRevocations:
    PRUNE_SECONDS = 60.0

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._pruned_at = float("-inf")

    async def add(self, jti: str, expires_at: float) -> None:
        with contextlib.suppress(IntegrityError):  # revoked twice: already there
            async with session_scope(self.sessions) as session:
                session.add(UsedMarker(key=_PREFIX + jti, expires_at=datetime.fromtimestamp(expires_at, UTC)))

    async def load(self, now: float) -> set[str]:
        moment = datetime.fromtimestamp(now, UTC)
        async with session_scope(self.sessions) as session:
            if time.monotonic() - self._pruned_at > self.PRUNE_SECONDS:
                await session.execute(delete(UsedMarker).where(UsedMarker.key.startswith(_PREFIX), UsedMarker.expires_at <= moment))
                self._pruned_at = time.monotonic()
            rows = await session.execute(select(UsedMarker.key).where(UsedMarker.key.startswith(_PREFIX), UsedMarker.expires_at > moment))
            return {key.removeprefix(_PREFIX) for key in rows.scalars()}

    async def close(self) -> None:
        return None


class RedisRevocations:
    KEY = "carevault:api:revoked"

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)

    async def add(self, jti: str, expires_at: float) -> None:
        await self._redis.zadd(self.KEY, {jti: expires_at})

    async def load(self, now: float) -> set[str]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.KEY, "-inf", now)
            pipe.zrangebyscore(self.KEY, now, "+inf")
            _, members = await pipe.execute()
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def close(self) -> None:
        await self._redis.aclose()


class RevocationList:
    def __init__(self, store: RevocationStore, refresh_seconds: float = 5.0) -> None:
        self.store, self.refresh_seconds = store, refresh_seconds
        self._revoked: set[str] = set()
        # Revoked through this replica: kept across a reload that started before they were stored.
        self._local: dict[str, float] = {}
        self._loaded_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def max_staleness(self) -> float:
        return 3 * self.refresh_seconds

    async def refresh(self) -> None:
        async with self._lock:
            started, now = time.monotonic(), time.time()
            loaded = await self.store.load(now)
            self._local = {jti: exp for jti, exp in self._local.items() if exp > now}
            self._revoked = loaded | self._local.keys()
            self._loaded_at = started

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="revocation-refresh")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception:  # the next check fails closed if this goes on
                logger.warning("revocation list not refreshed", exc_info=True)

    async def revoke(self, jti: str, expires_at: float) -> None:
        await self.store.add(jti, expires_at)
        self._local[jti] = expires_at
        self._revoked.add(jti)

    async def is_revoked(self, jti: str) -> bool:
        """From memory; reloaded first if the background refresh has stalled."""
        if time.monotonic() - self._loaded_at > self.max_staleness:
            try:
                await self.refresh()
            except Exception as exc:
                raise ServiceUnavailable("Token revocation cannot be checked right now.") from exc
        return jti in self._revoked

    async def is_revoked_now(self, jti: str) -> bool:
        """Exact, from the store (introspection: rare, and must not lag)."""
        await self.refresh()
        return jti in self._revoked

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.store.close()


def build_revocations(redis_url: str, sessions: async_sessionmaker[AsyncSession], refresh_seconds: float) -> RevocationList:
    store: RevocationStore = RedisRevocations(redis_url) if redis_url else DatabaseRevocations(sessions)
    return RevocationList(store, refresh_seconds)
