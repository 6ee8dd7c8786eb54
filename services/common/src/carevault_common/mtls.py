"""Mutual TLS between services.

A service's identity is the URI SAN ``spiffe://carevault/<service>`` of the
certificate it presents. The server side reads it from the verified peer
certificate (see :mod:`carevault_common.server`, which puts it in the ASGI
scope) and each router declares which identities may call it.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import Request

from carevault_common.errors import CallerNotAllowed

SPIFFE_PREFIX = "spiffe://carevault/"
TLS_EXTENSION = "tls"


def service_identity(service: str) -> str:
    return SPIFFE_PREFIX + service


def server_ssl_context(cert_file: Path, key_file: Path, ca_file: Path | None, *, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if require_client_cert:
        assert ca_file is not None
        context.load_verify_locations(ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_ssl_context(cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def identity_from_peercert(peercert: dict[str, Any] | None) -> str | None:
    """The carevault service identity in a verified peer certificate, if any."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith(SPIFFE_PREFIX):
            return value
    return None


def caller_identity(request: Request) -> str | None:
    tls = request.scope.get("extensions", {}).get(TLS_EXTENSION, {})
    identity = tls.get("peer_identity")
    return identity if isinstance(identity, str) else None


def require_callers(*services: str) -> Callable[[Request], Awaitable[str]]:
    """A dependency that admits only the named services; use it on a router."""
    allowed = frozenset(service_identity(s) for s in services)

    # async: a plain def dependency would run in FastAPI's thread pool on every request.
    async def check(request: Request) -> str:
        identity = caller_identity(request)
        if identity not in allowed:
            raise CallerNotAllowed("This service does not accept calls from this caller on this endpoint.")
        return identity.removeprefix(SPIFFE_PREFIX)

    return check


def allowed_identities(services: Iterable[str]) -> frozenset[str]:
    return frozenset(service_identity(s) for s in services)


def client_context_for(settings: Any) -> ssl.SSLContext:
    """The client side of this service's own identity, for calls to its peers."""
    return client_ssl_context(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file)
