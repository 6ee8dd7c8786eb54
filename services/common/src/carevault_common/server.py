"""Run a service: its TLS app and its plain-HTTP management app in one process.

Kubernetes probes and Prometheus cannot present client certificates, so health
and metrics live on a separate port that serves nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from carevault_common.mtls import TLS_EXTENSION, identity_from_peercert
from carevault_common.settings import ServiceSettings


class ServiceHttpProtocol(HttpToolsProtocol):
    """Uvicorn's HTTP protocol, plus the ASGI TLS extension carrying the caller's
    verified service identity on the mTLS port (uvicorn does not expose the peer
    certificate; on the plain management port there is none), and a bound on the time
    a request's head may take to arrive.

    uvicorn bounds only the wait between requests, and resets that on every byte: a
    client sending a header line now and then (slowloris) or nothing at all after the
    handshake would hold its connection forever. Here the head must be complete within
    ``head_timeout_seconds`` of the connection or of the request's first byte."""

    peer_identity: str | None = None
    head_timeout_seconds: float = 60.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.peer_identity = identity_from_peercert(ssl_object.getpeercert())
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TLS_EXTENSION: {"peer_identity": self.peer_identity}}
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _protocol(head_timeout_seconds: float) -> type[ServiceHttpProtocol]:
    return type("ServiceHttpProtocol", (ServiceHttpProtocol,), {"head_timeout_seconds": head_timeout_seconds})


class _QuietSignalsServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve`, which
    stops both servers in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _server(app: FastAPI, host: str, port: int, settings: ServiceSettings, ssl_context: ssl.SSLContext | None) -> uvicorn.Server:
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        # The management port too: probes and scrapers send their request at once.
        "http": _protocol(settings.client_idle_seconds),
        "lifespan": "on" if ssl_context is not None else "off",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # X-Forwarded-For is taken only from the proxies the gateway is told to trust (its
        # rate limit counts clients); every other service's peers are mesh services.
        "proxy_headers": bool(settings.proxy_peers()),
        "forwarded_allow_ips": settings.proxy_peers() or None,
        "date_header": False,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "timeout_keep_alive": 30,
        "backlog": 4096,
    }
    if ssl_context is not None:
        kwargs["ssl_context_factory"] = lambda _config, _default: ssl_context
    return _QuietSignalsServer(uvicorn.Config(app, **kwargs))


async def serve(app: FastAPI, management_app: FastAPI, settings: ServiceSettings, ssl_context: ssl.SSLContext) -> None:
    """Serve until SIGTERM or SIGINT, then drain the main server before the
    management port goes away (so readiness keeps being answered meanwhile)."""
    main = _server(app, settings.host, settings.port, settings, ssl_context)
    management = _server(management_app, settings.host, settings.management_port, settings, None)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if main.should_exit:
            main.force_exit = True
        main.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    management_task = asyncio.create_task(management.serve())
    try:
        await main.serve()
    finally:
        management.should_exit = True
        await management_task


def run(app: FastAPI, management_app: FastAPI, settings: ServiceSettings, ssl_context: ssl.SSLContext) -> None:
    import uvloop

    uvloop.run(serve(app, management_app, settings, ssl_context))
