"""Every endpoint and dependency of every service is a coroutine.

FastAPI runs a plain ``def`` endpoint or dependency in its thread pool: a thread hop
and GIL hand-over on every request that uses it. One such dependency on records'
FHIR router cost about a fifth of records' CPU on the read path (py-spy, make bench
--profile); this keeps the next one out.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant

PACKAGES = ["carevault_gateway", "carevault_api", "carevault_records", "carevault_keyservice", "carevault_fileservice", "carevault_common"]


def _routers() -> Iterator[tuple[str, APIRouter]]:
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, APIRouter):
                    yield info.name, value


def _is_async(call: Any) -> bool:
    return (
        inspect.iscoroutinefunction(call)
        or inspect.isasyncgenfunction(call)
        or inspect.iscoroutinefunction(getattr(call, "__call__", None))
    )


def _sync_calls(dependant: Dependant) -> Iterator[str]:
    if dependant.call is not None and not _is_async(dependant.call):
        yield getattr(dependant.call, "__qualname__", repr(dependant.call))
    for sub in dependant.dependencies:
        yield from _sync_calls(sub)


def test_no_endpoint_or_dependency_runs_in_the_thread_pool() -> None:
    routes = 0
    offenders: set[str] = set()
    for module, router in _routers():
        for route in router.routes:
            dependant = getattr(route, "dependant", None)
            if dependant is None:
                continue
            routes += 1
            offenders.update(f"{module}: {getattr(route, 'path', '?')} uses {name}" for name in _sync_calls(dependant))
    assert routes > 100, "the routers were not found; the check would pass vacuously"
    assert not offenders, "plain def endpoints/dependencies (make them async def):\n" + "\n".join(sorted(offenders))
