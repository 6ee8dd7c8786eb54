"""Readiness is computed at most once per READINESS_CACHE_SECONDS and shared by
concurrent callers; a failing or hanging check reads as not ready."""

from __future__ import annotations

import asyncio
import types

import pytest

from carevault_common import app as app_module
from carevault_common.app import READINESS_CACHE_SECONDS, add_readiness_check, build_app, readiness


class Clock:
    """Stands in for the module's ``time``: readiness only reads ``monotonic``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(app_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


async def test_concurrent_callers_share_one_run_and_the_answer_is_reused_until_it_expires(clock: Clock) -> None:
    app = build_app("test")
    calls = 0
    release = asyncio.Event()

    async def database() -> bool:
        nonlocal calls
        calls += 1
        await release.wait()
        return True

    add_readiness_check(app, "database", database)
    waiting = [asyncio.create_task(readiness(app)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    answers = await asyncio.gather(*waiting)
    assert answers == [{"database": True}] * 20
    assert calls == 1

    clock.now += READINESS_CACHE_SECONDS / 2
    assert await readiness(app) == {"database": True}
    assert calls == 1

    clock.now += READINESS_CACHE_SECONDS
    assert await readiness(app) == {"database": True}
    assert calls == 2


async def test_a_failing_or_raising_check_is_not_ready_and_is_asked_again_once_expired(clock: Clock) -> None:
    app = build_app("test")
    state = {"database": False}

    async def database() -> bool:
        return state["database"]

    async def keyservice() -> bool:
        raise ConnectionError("refused")

    add_readiness_check(app, "database", database)
    add_readiness_check(app, "keyservice", keyservice)
    assert await readiness(app) == {"database": False, "keyservice": False}

    state["database"] = True
    assert await readiness(app) == {"database": False, "keyservice": False}  # still the cached answer
    clock.now += READINESS_CACHE_SECONDS
    assert await readiness(app) == {"database": True, "keyservice": False}


async def test_a_hanging_check_reads_as_not_ready(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "READINESS_TIMEOUT_SECONDS", 0.01)
    app = build_app("test")

    async def database() -> bool:
        await asyncio.Event().wait()  # never answers
        return True

    add_readiness_check(app, "database", database)
    assert await readiness(app) == {"database": False}
