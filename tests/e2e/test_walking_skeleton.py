"""A request through the public gateway crosses every hop, with one trace id."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import time

import httpx

from carevault_api.audit.relay import MAX_FHIR_BODY
from carevault_common.app import READINESS_CACHE_SECONDS
from tests.support import RunningMesh, get_when_ready, read_http_answer

SERVICES = ("gateway", "api", "records", "keyservice", "fileservice")


async def test_one_trace_id_in_every_hop(mesh: RunningMesh) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    # Each service answers readiness from a cache at most READINESS_CACHE_SECONDS old
    # (the mesh's own start-up polling may just have filled it): let the caches expire
    # so that this health check fans out through every hop.
    await asyncio.sleep(READINESS_CACHE_SECONDS * 1.5)
    async with mesh.client() as client:
        resp = await get_when_ready(client, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert resp.status_code == 200
    request_id = resp.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while True:
        missing = [s for s in SERVICES if trace_id not in mesh.logs(s)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not missing, f"trace id absent from the logs of {missing}"
    assert all(request_id in mesh.logs(s) for s in SERVICES)


async def test_unknown_route_is_a_problem_passed_through_unchanged(mesh: RunningMesh) -> None:
    async with mesh.client() as client:
        resp = await client.get("/no/such/thing")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found")


def test_declared_body_over_limit_is_refused_with_413_before_upload(mesh: RunningMesh) -> None:
    # A raw request: HTTP clients refuse to send a Content-Length they will not honour.
    context = mesh.ssl_context()
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"POST /fhir/Binary HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000\r\n\r\nx")
            answer = read_http_answer(tls)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    # Under the FHIR base, errors are OperationOutcomes carrying the problem type.
    assert b"application/fhir+json" in head
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "payload-too-large"


def test_an_undeclared_body_over_limit_is_refused_with_413_not_blamed_on_a_peer(mesh: RunningMesh) -> None:
    """Chunked, so no size is known up front: the limit trips while the body streams on
    to the next hop. That is the client's fault (413), not an unavailable peer (503)."""
    context = mesh.ssl_context()
    piece = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(
                f"POST /fhir/Observation HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {mesh.dev_token}\r\n"
                "Content-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            try:
                for _ in range(MAX_FHIR_BODY // len(piece) + 1):
                    tls.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                tls.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # refused before the end: the answer is already waiting
            answer = read_http_answer(tls)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["issue"][0]["details"]["coding"][0]["code"] == "payload-too-large"


def _seconds_until_closed(mesh: RunningMesh, head_pieces: list[bytes], pause: float) -> float:
    """Connect to the gateway over TLS, send ``head_pieces`` ``pause`` seconds apart
    (and then nothing), and return how long the gateway kept the connection open."""
    context = mesh.ssl_context()
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            opened = time.monotonic()
            pieces = iter(head_pieces)
            tls.settimeout(pause)
            try:
                while True:
                    piece = next(pieces, None)
                    if piece is None:
                        tls.settimeout(30)
                    else:
                        tls.sendall(piece)
                    try:
                        if tls.recv(1) == b"":
                            break  # closed by the gateway
                    except TimeoutError:
                        assert piece is not None, "the gateway kept an idle connection open for 30 s"
                        continue  # still open: send the next piece
            except (ConnectionError, ssl.SSLError):
                pass  # closed by the gateway
            return time.monotonic() - opened


def test_a_connection_that_sends_nothing_is_closed(mesh: RunningMesh) -> None:
    """After the TLS handshake, a request head must begin and end within
    GATEWAY_CLIENT_IDLE_SECONDS (4 s in the test mesh; 60 by default)."""
    assert 3.5 < _seconds_until_closed(mesh, [], 1.0) < 20


def test_the_management_port_closes_an_idle_connection_too(mesh: RunningMesh) -> None:
    """Plain HTTP, cluster-internal, but a connection that sends nothing is not kept either."""
    with socket.create_connection(("127.0.0.1", mesh.layout.management_port("gateway")), timeout=30) as raw:
        opened = time.monotonic()
        assert raw.recv(1) == b""
        assert 3.5 < time.monotonic() - opened < 20


def test_a_request_head_sent_a_line_at_a_time_is_cut_off(mesh: RunningMesh) -> None:
    """Slowloris: a byte now and then resets no clock; the head as a whole must arrive in time."""
    lines = [b"GET /healthz HTTP/1.1\r\n"] + [f"x-slow-{i}: {i}\r\n".encode() for i in range(30)]
    held = _seconds_until_closed(mesh, lines, 0.5)
    assert 3.5 < held < 10, held


def test_a_connection_kept_alive_between_requests_still_serves(mesh: RunningMesh) -> None:
    """The bound is on a request's head, not on a connection's life: one connection
    (the same socket) serves requests spread over more than the bound."""
    context = mesh.ssl_context()
    with socket.create_connection(("127.0.0.1", mesh.layout.tls_port("gateway")), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            for _ in range(2):
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                answer = read_http_answer(tls)
                assert answer.startswith(b"HTTP/1.1 "), answer[:200]
                assert b"connection: close" not in answer.lower()
                time.sleep(6)  # longer than the 4 s head bound of the test mesh
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert read_http_answer(tls).startswith(b"HTTP/1.1 ")


async def test_management_port_serves_only_health_and_metrics(mesh: RunningMesh) -> None:
    for service in SERVICES:
        base = f"http://127.0.0.1:{mesh.layout.management_port(service)}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await get_when_ready(client, "/readyz")).status_code == 200
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert (await client.get("/_mesh/ready")).status_code == 404
            assert (await client.get("/fhir/metadata")).status_code == 404
    # Metrics are labelled by route template, never by a raw path.
    text = metrics.text
    assert 'route="/_mesh/ready"' in text or 'route="/{path:path}"' in text
    routes = set(re.findall(r'route="([^"]*)"', text))
    assert all(r.startswith("/") or r == "unmatched" for r in routes)
