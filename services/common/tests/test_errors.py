from __future__ import annotations

import httpx
import pytest
from pydantic import BaseModel

from carevault_common.app import build_app
from carevault_common.errors import Conflict, ProblemError


class Payload(BaseModel):
    count: int


def _app() -> object:
    app = build_app("test")

    @app.get("/conflict")
    async def conflict() -> None:
        raise Conflict("Version mismatch.")

    @app.get("/fhir/Patient/{pid}")
    async def fhir(pid: str) -> None:
        raise ProblemError("Nope.", status=422, code="invalid-resource")

    @app.post("/validate")
    async def validate(payload: Payload) -> dict[str, int]:
        return {"count": payload.count}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret patient detail")

    return app


@pytest.fixture
def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_problem_details_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/conflict")
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json() == {
        "type": "https://carevault.dev/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Version mismatch.",
    }


async def test_fhir_paths_answer_operation_outcome(client: httpx.AsyncClient) -> None:
    resp = await client.get("/fhir/Patient/x")
    body = resp.json()
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/fhir+json"
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == "invalid-resource"


async def test_validation_error_is_422_without_echoing_input(client: httpx.AsyncClient) -> None:
    resp = await client.post("/validate", json={"count": "jane.doe@example.org"})
    assert resp.status_code == 422
    assert "jane.doe" not in resp.text
    assert resp.json()["errors"][0]["loc"] == ["body", "count"]


async def test_unexpected_error_is_500_problem_without_detail(client: httpx.AsyncClient) -> None:
    resp = await client.get("/boom")
    assert resp.status_code == 500
    assert "secret" not in resp.text
    assert resp.json()["type"].endswith("/internal-error")
