"""api's typed client for records."""

from __future__ import annotations

from typing import Any

from carevault_common.clients import ServiceClient
from carevault_common.errors import PROBLEM_TYPE_BASE, ProblemError, ServiceUnavailable


def _problem(status: int, body: Any) -> ProblemError:
    """records' problem, passed on with its status and type."""
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return ProblemError(
            str(body.get("detail") or body.get("title") or ""),
            status=status,
            code=body["type"].removeprefix(PROBLEM_TYPE_BASE),
            title=str(body.get("title") or ""),
        )
    return ServiceUnavailable("The records service gave an unexpected answer.")


class RecordsClient(ServiceClient):
    @staticmethod
    def _caller(tenant: str, principal: str) -> dict[str, str]:
        return {"x-carevault-tenant": tenant, "x-carevault-principal": principal}

    async def verify_patient_key(self, *, tenant: str, principal: str, patient_id: str, patient_key: str) -> None:
        """Returns if the key opens the patient's data; raises records' problem otherwise."""
        resp = await self.request(
            "POST", f"/_patients/{patient_id}/verify-key", headers=self._caller(tenant, principal) | {"x-patient-key": patient_key}
        )
        if resp.status != 204:
            raise _problem(resp.status, resp.json() if resp.body else None)

    async def erase_patient(self, *, tenant: str, principal: str, patient_id: str) -> dict[str, Any]:
        """Erase every record, key material and escrow of the patient (records asks keyservice)."""
        resp = await self.request("POST", f"/_patients/{patient_id}/erase", headers=self._caller(tenant, principal))
        if not resp.ok:
            raise _problem(resp.status, resp.json() if resp.body else None)
        answer: dict[str, Any] = resp.json()
        return answer
