"""api's typed client for keyservice."""

from __future__ import annotations

from carevault_common.clients import ServiceClient


class KeyserviceClient(ServiceClient):
    pass
