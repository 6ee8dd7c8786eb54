"""The FastAPI apps every service is made of: its TLS app and its management app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from carevault_common.db import (
    create_engine,
    database_error_code,
    database_ready,
    is_sqlite_lock_conflict,
    is_unique_violation,
    session_factory,
    write_sessions,
)
from carevault_common.errors import Conflict, ProblemError, ServiceUnavailable, install_error_handlers, render_problem, unexpected_error
from carevault_common.logging import configure_logging
from carevault_common.settings import DatabaseSettings, ServiceSettings
from carevault_common.telemetry import RequestContextMiddleware, configure_error_reports, configure_tracing

logger = logging.getLogger("carevault.database")


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


ReadinessCheck = Callable[[], Awaitable[bool]]
READINESS_TIMEOUT_SECONDS = 2.0
READINESS_CACHE_SECONDS = 1.0


def bootstrap(service: str, settings: ServiceSettings) -> None:
    """Process-wide setup; call once before building the apps."""
    configure_logging(service, settings.log_level, settings.log_file)
    configure_tracing(service, settings.otlp_endpoint, settings.trace_sample_ratio)
    configure_error_reports(service, settings.sentry_dsn, settings.environment.value)


# FastAPI's own OpenTelemetry spans, metrics and logs record raw URLs (query strings:
# search values, names), request bodies of failed validations and exception messages.
# Off: RequestContextMiddleware makes the one request span, named by route template.
NO_NATIVE_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False, "auto_configure": False}


def build_app(
    service: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    **kwargs: Any,
) -> FastAPI:
    # No trailing-slash redirects: a redirected POST loses its body through a proxy.
    app = FastAPI(title=f"carevault {service}", lifespan=lifespan, redirect_slashes=False, telemetry=NO_NATIVE_TELEMETRY, **kwargs)
    app.state.readiness_checks = []
    install_error_handlers(app)
    # Here, not in attach_database: the lifespan runs after Starlette has copied the
    # handlers into its middleware stack, so a handler added there is never used.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_middleware(RequestContextMiddleware, service=service, access_logger=logging.getLogger(f"carevault.{service}.access"))
    return app


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    app.state.readiness_checks.append((name, check))


def attach_database(app: FastAPI, settings: DatabaseSettings) -> AsyncEngine:
    """For lifespans: the service's engine, its session factories on ``app.state.sessions``
    and ``app.state.write_sessions`` (see ``carevault_common.db.write_sessions``) and the
    "database" readiness check. The lifespan disposes of the engine it returns."""
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size, max_overflow=settings.database_max_overflow)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.write_sessions = write_sessions(engine)
    add_readiness_check(app, "database", lambda: database_ready(engine))
    return engine


class DatabaseBusy(ServiceUnavailable):
    code, title = "database-busy", "The database is busy with another write"


class ConcurrentWrite(Conflict):
    code, title = "concurrent-write", "Another request wrote the same thing at the same time"


async def _database_error(request: Request, exc: Exception) -> Response:
    """Database failures that are the moment's, not the code's, and left nothing
    written (the request's transaction rolled back): a transaction SQLite turned away
    for another writer (``is_sqlite_lock_conflict``) is 503 with a retry; a duplicate
    key, as two requests creating the same thing at once end in, is 409. Anything
    else is a 500."""
    problem: ProblemError
    if is_sqlite_lock_conflict(exc):
        problem = DatabaseBusy("Nothing was changed; retry in a moment.", headers={"retry-after": "1"})
    elif is_unique_violation(exc):
        problem = ConcurrentWrite("Nothing of this request was written; read the current state before trying again.")
    else:
        return await unexpected_error(request, exc)
    logger.warning("database refused a write", extra={"problem": problem.code, "error_code": database_error_code(exc)})
    return render_problem(request.url.path, problem.to_problem(), problem.headers)


async def _pool_exhausted(request: Request, exc: Exception) -> Response:
    """Every connection of the service's pool stayed in use for the pool's timeout: an
    overload of the moment (503, retry), not a fault of the request (500)."""
    problem = DatabaseBusy("All of this service's database connections are in use; retry in a moment.", headers={"retry-after": "1"})
    logger.warning("database connection pool exhausted", extra={"problem": problem.code})
    return render_problem(request.url.path, problem.to_problem(), problem.headers)


async def _run_check(check: ReadinessCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
    except Exception:
        return False


async def readiness(app: FastAPI) -> dict[str, bool]:
    """Every check, at most once per READINESS_CACHE_SECONDS: a probe or a health
    check through the gateway fans out to every service and database, and asking
    them all on every call made readiness itself the bottleneck under load."""
    fresh = _fresh_readiness(app)
    if fresh is not None:
        return fresh
    lock: asyncio.Lock | None = getattr(app.state, "readiness_lock", None)
    if lock is None:
        lock = app.state.readiness_lock = asyncio.Lock()
    async with lock:
        fresh = _fresh_readiness(app)  # another request may have asked meanwhile
        if fresh is not None:
            return fresh
        checks: list[tuple[str, ReadinessCheck]] = app.state.readiness_checks
        results = await asyncio.gather(*(_run_check(check) for _, check in checks))
        answer = {name: ok for (name, _), ok in zip(checks, results, strict=True)}
        app.state.readiness_cache = (time.monotonic(), answer)
        return answer


def _fresh_readiness(app: FastAPI) -> dict[str, bool] | None:
    cached: tuple[float, dict[str, bool]] | None = getattr(app.state, "readiness_cache", None)
    if cached is not None and time.monotonic() - cached[0] < READINESS_CACHE_SECONDS:
        return cached[1]
    return None


def build_management_app(app: FastAPI) -> FastAPI:
    """Plain-HTTP app on its own port: /healthz, /readyz, /metrics and nothing else."""
    management = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, telemetry=NO_NATIVE_TELEMETRY)

    @management.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @management.get("/readyz")
    async def readyz() -> Response:
        if not getattr(app.state, "started", False):
            return json_response({"status": "starting"}, status_code=503)
        checks = await readiness(app)
        ready = all(checks.values())
        return json_response({"status": "ready" if ready else "not-ready", "checks": checks}, status_code=200 if ready else 503)

    @management.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return management


async def lifespan_marker(app: FastAPI) -> AsyncIterator[None]:
    """Helper for lifespans: marks the app started for /readyz."""
    app.state.started = True
    try:
        yield
    finally:
        app.state.started = False


def mesh_router(app: FastAPI, *callers: str) -> Any:
    """``GET /_mesh/ready`` on the TLS port, for the services allowed to call this one:
    how a caller learns over mTLS that this service and what it depends on answer."""
    from fastapi import APIRouter, Depends

    from carevault_common.mtls import require_callers

    router = APIRouter(dependencies=[Depends(require_callers(*callers))])

    @router.get("/_mesh/ready")
    async def mesh_ready() -> Response:
        checks = await readiness(app)
        ready = all(checks.values())
        return json_response({"ready": ready}, status_code=200 if ready else 503)

    return router
