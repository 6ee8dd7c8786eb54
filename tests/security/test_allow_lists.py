"""Invariant 4: each internal service refuses callers outside its allow-list.

Every identity below holds a certificate from the mesh's own CA, so a refusal
proves the identity check, not merely the CA check; a caller without any
client certificate, or with one from another CA, is refused at the handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from carevault_crypto.pki import ensure_ca, issue_certificate
from tests.support import RunningMesh

ALLOWED = {"api": {"gateway"}, "records": {"api"}, "fileservice": {"api"}, "keyservice": {"records", "api"}}
IDENTITIES = ["gateway", "api", "records", "keyservice", "fileservice", "intruder"]


def _context(mesh: RunningMesh, identity: str) -> ssl.SSLContext:
    if identity == "intruder":
        issue_certificate(mesh.state_dir, "intruder")
    return mesh.ssl_context(identity)


@pytest.mark.parametrize("service", sorted(ALLOWED))
@pytest.mark.parametrize("identity", IDENTITIES)
async def test_internal_service_admits_only_its_callers(mesh: RunningMesh, service: str, identity: str) -> None:
    async with httpx.AsyncClient(verify=_context(mesh, identity), timeout=10) as client:
        resp = await client.get(f"{mesh.layout.url(service)}/_mesh/ready")
    if identity in ALLOWED[service]:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 403
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["type"].endswith("/caller-not-allowed")


@pytest.mark.parametrize("service", sorted(ALLOWED))
async def test_internal_service_refuses_a_caller_without_certificate(mesh: RunningMesh, service: str) -> None:
    async with httpx.AsyncClient(verify=mesh.ssl_context(None), timeout=10) as client:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(f"{mesh.layout.url(service)}/_mesh/ready")


@pytest.mark.parametrize("service", sorted(ALLOWED))
async def test_internal_service_refuses_a_certificate_from_another_ca(mesh: RunningMesh, service: str, tmp_path: Path) -> None:
    ensure_ca(tmp_path)
    foreign = issue_certificate(tmp_path, "api")  # right name, wrong CA
    context = ssl.create_default_context(cafile=str(mesh.state_dir / "ca.pem"))
    context.load_cert_chain(foreign.cert, foreign.key)
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get(f"{mesh.layout.url(service)}/_mesh/ready")
