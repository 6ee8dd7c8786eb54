"""Per-client rate limits, in-process or shared across gateway replicas via Redis."""

from __future__ import annotations

import time
from typing import Protocol

from carevault_common.errors import ProblemError


class TooManyRequests(ProblemError):
    status, code, title = 429, "rate-limited", "Too many requests"


class RateLimiter(Protocol):
    async def allow(self, client: str) -> bool: ...

    async def close(self) -> None: ...


class LocalTokenBucket:
    """A token bucket per client address, for a single replica."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    async def allow(self, client: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            self._buckets.clear()  # bounded memory under address scans; refills are generous
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1, now)
        return True

    async def close(self) -> None:
        return None


class RedisFixedWindow:
    """A counter per client and second in Redis, shared by every replica."""

    def __init__(self, url: str, rate: float, burst: int) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self.limit = int(max(rate, burst))

    async def allow(self, client: str) -> bool:
        key = f"carevault:rl:{client}:{int(time.time())}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        return int(count) <= self.limit

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def build_rate_limiter(redis_url: str, rate: float, burst: int) -> RateLimiter:
    if redis_url:
        return RedisFixedWindow(redis_url, rate, burst)
    return LocalTokenBucket(rate, burst)
