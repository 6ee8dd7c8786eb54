"""api's typed client for keyservice: its break-glass endpoints (the only ones api
may call). keyservice enforces the workflow; api says who is acting."""

from __future__ import annotations

from typing import Any

from carevault_common.clients import ServiceClient
from carevault_common.errors import problem_from_peer


class KeyserviceClient(ServiceClient):
    async def _call(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> dict[str, Any]:
        resp = await self.request(method, "/break-glass" + path, json=json, params=params)
        if not resp.ok:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        answer: dict[str, Any] = resp.json()
        return answer

    async def open_request(self, *, tenant: str, patient_id: str, requester: str, reason: str, document_sha256: str) -> dict[str, Any]:
        body = {"tenant": tenant, "patient_id": patient_id, "requester": requester, "reason": reason, "document_sha256": document_sha256}
        return await self._call("POST", "/requests", body)

    async def get_request(self, request_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/requests/{request_id}")

    async def list_requests(self, tenant: str) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = (await self._call("GET", "/requests", params={"tenant": tenant}))["requests"]
        return requests

    async def decide(self, request_id: str, *, decided_by: str, approve: bool) -> dict[str, Any]:
        return await self._call("POST", f"/requests/{request_id}/decision", {"decided_by": decided_by, "approve": approve})

    async def release(self, request_id: str, *, requester: str) -> list[dict[str, Any]]:
        packages: list[dict[str, Any]] = (await self._call("POST", f"/requests/{request_id}/release", {"requester": requester}))["packages"]
        return packages

    async def check_access(self, request_id: str, *, requester: str) -> dict[str, Any]:
        return await self._call("POST", f"/requests/{request_id}/access", {"requester": requester})

    async def close_request(self, request_id: str, *, closed_by: str) -> dict[str, Any]:
        return await self._call("POST", f"/requests/{request_id}/close", {"closed_by": closed_by})
