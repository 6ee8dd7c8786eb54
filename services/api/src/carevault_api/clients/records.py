"""api's typed client for records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carevault_common.clients import ServiceClient
from carevault_common.errors import problem_from_peer


class RecordsClient(ServiceClient):
    async def prepare_content(self, headers: Mapping[str, str], patient: str, binary_id: str | None) -> dict[str, Any]:
        """A new blob id, its file key (a secret) and the content extension for a
        Binary of ``patient``, after records checked the patient key."""
        body: dict[str, str] = {"patient": patient}
        if binary_id is not None:
            body["binary"] = binary_id
        resp = await self.request("POST", "/files/prepare", json=body, headers=headers)
        if resp.status != 200:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        result: dict[str, Any] = resp.json()
        return result

    async def open_binary(self, headers: Mapping[str, str], binary_id: str, version_id: str | None) -> dict[str, Any]:
        """Blob id, file key (a secret), content type, size and the public resource."""
        path = f"/files/Binary/{binary_id}" + (f"/_history/{version_id}" if version_id is not None else "")
        resp = await self.request("GET", path, headers=headers)
        if resp.status != 200:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        result: dict[str, Any] = resp.json()
        return result
