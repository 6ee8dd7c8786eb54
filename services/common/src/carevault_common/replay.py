"""One-time-use markers (jti replay, DPoP proofs, revoked token ids) with a TTL:
in this process, or shared by every replica through Redis."""

from __future__ import annotations

import time
from typing import Protocol


class ReplayCache(Protocol):
    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        """Record ``key``; True the first time, False when it was seen before."""
        ...

    async def seen(self, key: str) -> bool: ...

    async def close(self) -> None: ...


class LocalReplayCache:
    """For one replica (the embedded default). Bounded: expired entries are
    pruned, and when it is full the oldest expiries go first."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._expiry: dict[str, float] = {}

    def _prune(self, now: float) -> None:
        self._expiry = {k: v for k, v in self._expiry.items() if v > now}
        if len(self._expiry) >= self.max_entries:
            keep = sorted(self._expiry.items(), key=lambda kv: kv[1])[len(self._expiry) // 2 :]
            self._expiry = dict(keep)

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        now = time.monotonic()
        expiry = self._expiry.get(key)
        if expiry is not None and expiry > now:
            return False
        if len(self._expiry) >= self.max_entries:
            self._prune(now)
        self._expiry[key] = now + ttl_seconds
        return True

    async def seen(self, key: str) -> bool:
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > time.monotonic()

    async def close(self) -> None:
        return None


class RedisReplayCache:
    """``SET key 1 NX EX ttl``: atomic across replicas."""

    def __init__(self, url: str, namespace: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self.namespace = namespace

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        return bool(await self._redis.set(f"{self.namespace}:{key}", b"1", nx=True, ex=max(1, ttl_seconds)))

    async def seen(self, key: str) -> bool:
        return bool(await self._redis.exists(f"{self.namespace}:{key}"))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
