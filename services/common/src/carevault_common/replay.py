"""One-time-use markers (jti replay, DPoP proofs, revoked token ids) with a TTL:
in this process, or shared by every replica through Redis."""

from __future__ import annotations

import asyncio
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
    """``SET key 1 NX EX ttl``: atomic across replicas.

    Markers claimed while a round trip is in flight go together in the next one (one
    pipeline, not a transaction: each ``SET NX`` stays atomic on its own and answers
    for its own key). Under concurrency this turns one Redis round trip per request,
    the largest CPU cost of a DPoP check at the gateway (the system calls of a loopback
    round trip), into one per batch; each caller still waits for its own answer
    before it goes on, so every marker is checked before its request proceeds."""

    MAX_BATCH = 256

    def __init__(self, url: str, namespace: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self.namespace = namespace
        self._pending: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        claimed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((f"{self.namespace}:{key}", max(1, ttl_seconds), claimed))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._claim_pending())
        return await claimed

    async def _claim_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.MAX_BATCH], self._pending[self.MAX_BATCH :]
            try:
                if len(batch) == 1:
                    key, ttl, _ = batch[0]
                    results = [await self._redis.set(key, b"1", nx=True, ex=ttl)]
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for key, ttl, _ in batch:
                            pipe.set(key, b"1", nx=True, ex=ttl)
                        results = await pipe.execute()
            except Exception as exc:  # every waiter must learn it (none may hang): Redis down fails closed
                for _, _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for (_, _, waiter), result in zip(batch, results, strict=True):
                if not waiter.done():
                    waiter.set_result(bool(result))

    async def seen(self, key: str) -> bool:
        return bool(await self._redis.exists(f"{self.namespace}:{key}"))

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
