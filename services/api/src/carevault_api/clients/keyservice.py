"""api's typed client for keyservice: its break-glass endpoints (the only ones api
may call). keyservice enforces the workflow; api says who is acting."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from carevault_common.clients import ServiceClient
from carevault_common.errors import ServiceUnavailable, problem_from_peer


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

    # -- bulk re-escrow (the doctor tool's input and output; escrow_admin) --------------

    async def export_page(self, doctor_key_id: str, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the packages sealed to ``doctor_key_id`` and where the next starts."""
        params = {"doctor_key_id": doctor_key_id, "after": str(after), "limit": str(limit)}
        page = await self._call("GET", "/escrow-export", params=params)
        next_after = page["next_after"]
        return list(page["packages"]), (int(next_after) if next_after is not None else None)

    async def escrow_coverage(self) -> dict[str, Any]:
        return await self._call("GET", "/escrow-coverage")

    async def upload_packages(self, packages: list[dict[str, Any]], timeout_seconds: float) -> dict[str, int]:
        """All packages in one call: keyservice checks and stores them in one transaction
        (a bad one stores none). Not retried (a POST); repeating it is safe (idempotent)."""
        resp = await self.open("POST", "/break-glass/escrow-uploads", body=orjson.dumps({"packages": packages}),
                               headers={"content-type": "application/json"}, timeout_seconds=timeout_seconds)  # fmt: skip
        try:
            payload = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ServiceUnavailable(f"The {self.peer} service is unavailable.") from exc
        finally:
            resp.release()
        if resp.status != 200:
            raise problem_from_peer(resp.status, payload, self.peer)
        answer = orjson.loads(payload)
        return {"added": int(answer["added"]), "already_present": int(answer["already_present"])}
