"""api's typed client for records."""

from __future__ import annotations

from carevault_common.clients import ServiceClient


class RecordsClient(ServiceClient):
    pass
