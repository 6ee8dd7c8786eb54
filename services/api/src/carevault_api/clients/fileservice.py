"""api's typed client for fileservice."""

from __future__ import annotations

from carevault_common.clients import ServiceClient


class FileserviceClient(ServiceClient):
    pass
