"""The gateway's per-client rate limit counts clients, not what they claim to be.

A client cannot spread its requests over made-up addresses with ``X-Forwarded-For``
(uvicorn would take that header from a loopback peer unless told not to); only the
proxies the gateway is told to trust (``GATEWAY_TRUSTED_PROXIES``, a load balancer
or ingress) name the client that way, so that clients behind one proxy do not share
one limit. A gateway alone, with a limit of 3 and nothing behind it: what passes the
limit fails upstream (502/503); what does not is answered 429."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from carevault_cli.mesh import Mesh, MeshLayout, prepare_state, stop_process, wait_until_ok
from tests.support import free_port_offset

# A burst of 3 and next to no refill (one request per ~17 minutes): however slowly the
# machine sends the 8 requests, exactly 3 pass the limit.
LIMIT = {"GATEWAY_RATE_LIMIT_PER_SECOND": "0.001", "GATEWAY_RATE_LIMIT_BURST": "3"}


def _answers(state_dir: Path, env: dict[str, str], forwarded_for: list[str]) -> list[httpx.Response]:
    """A gateway alone with ``env``; one request per ``X-Forwarded-For`` value."""
    layout = MeshLayout(state_dir=state_dir, port_offset=free_port_offset(), extra_env=LIMIT | env)
    prepare_state(layout)
    mesh = Mesh(layout)
    mesh.start_one("gateway")
    gateway = mesh.processes["gateway"]
    try:
        health = f"http://127.0.0.1:{layout.management_port('gateway')}/healthz"
        wait_until_ok(health, gateway, 30, name="the gateway", logs=layout.state_dir / "logs")
        context = ssl.create_default_context(cafile=str(layout.state_dir / "ca.pem"))
        with httpx.Client(base_url=layout.gateway_url, verify=context, timeout=10) as client:
            return [client.get("/fhir/metadata", headers={"x-forwarded-for": value}) for value in forwarded_for]
    finally:
        stop_process(gateway)


def test_x_forwarded_for_does_not_escape_the_rate_limit(tmp_path: Path) -> None:
    answers = _answers(tmp_path / "state", {}, [f"203.0.113.{n}" for n in range(1, 9)])
    statuses = [a.status_code for a in answers]
    assert statuses.count(429) == 5, statuses
    assert all(s in (429, 502, 503) for s in statuses), statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["resourceType"] == "OperationOutcome"  # under /fhir, errors are FHIR's


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(tmp_path: Path) -> None:
    # The test client connects from 127.0.0.1: here it stands for the load balancer.
    clients = [f"203.0.113.{n}" for n in range(1, 9)]
    spread = _answers(tmp_path / "spread", {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}, clients)
    assert 429 not in [a.status_code for a in spread], [a.status_code for a in spread]
    one_client = _answers(tmp_path / "one", {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}, ["203.0.113.7"] * 8)
    assert [a.status_code for a in one_client].count(429) == 5, [a.status_code for a in one_client]
    # A client cannot pose as the proxy by naming it: the rightmost untrusted address counts.
    posing = _answers(
        tmp_path / "posing", {"GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32"}, [f"198.51.100.{n}, 203.0.113.7" for n in range(1, 9)]
    )
    assert [a.status_code for a in posing].count(429) == 5, [a.status_code for a in posing]
