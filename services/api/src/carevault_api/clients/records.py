"""api's typed client for records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carevault_api.audit.hints import note_patients
from carevault_common.clients import ServiceClient, ServiceResponse
from carevault_common.errors import problem_from_peer


class RecordsClient(ServiceClient):
    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
    ) -> ServiceResponse:
        """Every call, noting for the audit trail which patients records says it reached for."""
        resp = await super().request(method, path, json=json, content=content, headers=headers, params=params)
        note_patients(resp.headers)
        return resp

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

    async def open_binary(self, headers: Mapping[str, str], binary_id: str, version_id: str | None) -> tuple[dict[str, Any], str | None]:
        """Blob id, file key (a secret), content type, size and the public resource;
        and the patient records reports having opened (x-carevault-patient)."""
        path = f"/files/Binary/{binary_id}" + (f"/_history/{version_id}" if version_id is not None else "")
        resp = await self.request("GET", path, headers=headers)
        if resp.status != 200:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        result: dict[str, Any] = resp.json()
        return result, resp.headers.get("x-carevault-patient")

    async def idempotent_binary(self, headers: Mapping[str, str], key: str, digest: str | None) -> ServiceResponse | None:
        """Without ``digest``: an empty answer (204) if the key was never used, else a 200.
        With it: the first answer to the same request (replayed), or records' 422 if the
        key came with another request. None when the key is unknown."""
        body: dict[str, str] = {"key": key}
        if digest is not None:
            body["digest"] = digest
        resp = await self.request("POST", "/files/idempotency", json=body, headers=headers)
        if resp.status == 204:
            return None
        if not resp.ok:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        return resp

    async def abandon_pending_uploads(self, older_than_seconds: int, limit: int) -> list[str]:
        """Claim the uploads handed out more than ``older_than_seconds`` ago whose Binary
        never committed; their blob ids (and those of earlier unfinished sweeps)."""
        resp = await self.request("POST", "/files/pending/abandon", json={"olderThanSeconds": older_than_seconds, "limit": limit})
        if resp.status != 200:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        return [str(blob_id) for blob_id in resp.json()["blobIds"]]

    async def forget_pending_uploads(self, blob_ids: list[str]) -> None:
        """Drop the pending uploads of blobs that are gone."""
        resp = await self.request("POST", "/files/pending/forget", json={"blobIds": blob_ids})
        if resp.status != 200:
            raise problem_from_peer(resp.status, resp.body, self.peer)

    # -- audit and erasure ---------------------------------------------------------------

    @staticmethod
    def _caller(tenant: str, principal: str) -> dict[str, str]:
        return {"x-carevault-tenant": tenant, "x-carevault-principal": principal}

    async def verify_patient_key(self, *, tenant: str, principal: str, patient_id: str, patient_key: str) -> None:
        """Returns if the key opens the patient's data; raises records' problem otherwise."""
        resp = await self.request(
            "POST", f"/_patients/{patient_id}/verify-key", headers=self._caller(tenant, principal) | {"x-patient-key": patient_key}
        )
        if resp.status != 204:
            raise problem_from_peer(resp.status, resp.body, self.peer)

    async def erase_patient(self, *, tenant: str, principal: str, patient_id: str, patient_key: str | None) -> dict[str, Any]:
        """Erase every record, key material and escrow of the patient (records asks
        keyservice); with the patient key, the answer lists the patient's blobs."""
        headers = self._caller(tenant, principal) | ({"x-patient-key": patient_key} if patient_key else {})
        resp = await self.request("POST", f"/_patients/{patient_id}/erase", headers=headers)
        if not resp.ok:
            raise problem_from_peer(resp.status, resp.body, self.peer)
        answer: dict[str, Any] = resp.json()
        return answer
