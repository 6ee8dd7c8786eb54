"""The public edge speaks HTTPS only, TLS 1.2 or newer."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.support import RunningMesh, get_when_ready


async def test_gateway_health_over_https_says_mesh_ready(mesh: RunningMesh) -> None:
    async with mesh.client() as client:
        resp = await get_when_ready(client)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready"}
    assert resp.headers["strict-transport-security"].startswith("max-age=")
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_plain_http_gets_no_http_answer(mesh: RunningMesh) -> None:
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            answer = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer[:64]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(mesh: RunningMesh, version: ssl.TLSVersion) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(mesh.state_dir / "ca.pem")
    try:
        context.minimum_version = version
        context.maximum_version = version
        # OpenSSL's default security level forbids TLS < 1.2 on the client too; lower it
        # so that the refusal we observe is the server's.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL build cannot even offer TLS below 1.2")
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=5) as sock:
        with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
            context.wrap_socket(sock, server_hostname="localhost")
    # The hello was sent and the server hung up; a client-side refusal would say so.
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)


def test_tls_1_2_is_accepted(mesh: RunningMesh) -> None:
    context = ssl.create_default_context(cafile=str(mesh.state_dir / "ca.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.2"
