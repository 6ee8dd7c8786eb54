"""records' typed client for keyservice (escrow endpoints only)."""

from __future__ import annotations

from carevault_common.clients import ServiceClient


class KeyserviceClient(ServiceClient):
    pass
