"""records' typed client for keyservice: escrow of patient keys (and its erasure), nothing else."""

from __future__ import annotations

import time

from carevault_common.clients import ServiceClient
from carevault_common.errors import ServiceUnavailable
from carevault_crypto import PatientKey
from carevault_crypto.export import patient_key_to_header


class KeyserviceClient(ServiceClient):
    _keyset: str = ""
    _keyset_at: float = 0.0
    keyset_ttl_seconds: float = 30.0

    async def escrow(self, *, tenant: str, patient_id: str, key_version: int, key: PatientKey) -> str:
        """Seal the key to every active doctor key (idempotent); returns the keyset id."""
        resp = await self.request(
            "POST",
            "/escrow/patients",
            json={"tenant": tenant, "patient_id": patient_id, "key_version": key_version, "patient_key": patient_key_to_header(key)},
        )
        if not resp.ok:
            raise ServiceUnavailable("Key escrow failed; nothing was written.")
        keyset: str = resp.json()["keyset"]
        self._keyset, self._keyset_at = keyset, time.monotonic()
        return keyset

    async def current_keyset(self) -> str:
        if self._keyset and time.monotonic() - self._keyset_at < self.keyset_ttl_seconds:
            return self._keyset
        resp = await self.request("GET", "/escrow/keyset")
        if not resp.ok:
            raise ServiceUnavailable("keyservice did not answer.")
        self._keyset, self._keyset_at = resp.json()["keyset"], time.monotonic()
        return self._keyset

    async def forget(self, *, tenant: str, patient_id: str) -> int:
        """Delete every escrow package of the patient (erasure); returns how many went."""
        resp = await self.request("POST", "/escrow/patients/erase", json={"tenant": tenant, "patient_id": patient_id})
        if not resp.ok:
            raise ServiceUnavailable("Escrow erasure failed; nothing was erased.")
        deleted: int = resp.json()["deleted"]
        return deleted
