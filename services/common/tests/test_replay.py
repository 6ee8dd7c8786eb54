"""The replay caches: a marker is first-used once, also when many requests claim
markers at the same moment (the Redis cache batches them into one round trip)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from carevault_common.replay import LocalReplayCache, RedisReplayCache

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable")


async def test_local_cache_answers_once() -> None:
    cache = LocalReplayCache()
    assert await cache.first_use("a", 60)
    assert not await cache.first_use("a", 60)
    assert await cache.seen("a") and not await cache.seen("b")


async def test_redis_cache_answers_once_per_key_under_concurrency() -> None:
    _redis_or_skip()
    namespace = f"test:{uuid.uuid4().hex}"
    one, other = RedisReplayCache(REDIS_URL, namespace), RedisReplayCache(REDIS_URL, namespace)  # two replicas
    try:
        keys = [uuid.uuid4().hex for _ in range(300)]
        # Every key claimed twice by each replica, all at once: the batches interleave.
        claims = [cache.first_use(key, 60) for key in keys for cache in (one, other, one, other)]
        results = await asyncio.gather(*claims)
        per_key = [results[i : i + 4] for i in range(0, len(results), 4)]
        assert all(sum(answers) == 1 for answers in per_key), "a marker was first-used twice or never"
        assert await one.seen(keys[0]) and not await one.first_use(keys[-1], 60)
    finally:
        await one.close()
        await other.close()


async def test_redis_cache_fails_closed_when_redis_is_down() -> None:
    cache = RedisReplayCache("redis://127.0.0.1:1/0", "test:down")  # nothing listens on port 1
    try:
        results = await asyncio.gather(*(cache.first_use(str(i), 60) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results), results
    finally:
        await cache.close()
