"""Development authentication: one static bearer token from a local file.

Only for `make run` and the tests; the settings refuse it outside the dev
environment. It predates consents: its principal acts tenant-wide on the FHIR
data of the dev tenant (``development=True``) and holds no administrative role.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request

from carevault_api.auth.principal import Kind, Principal, Role
from carevault_api.auth.scopes import parse_scope
from carevault_common.errors import Unauthorized

DEV_TENANT = "dev"
DEV_SUBJECT = "dev-user"
_ALL = parse_scope("system/*.cruds")
assert _ALL is not None
DEV_PRINCIPAL = Principal(
    DEV_TENANT, DEV_SUBJECT, kind=Kind.CLIENT, roles=frozenset({Role.CLINIC_CLIENT}), client_id="dev", scopes=(_ALL,), development=True
)


class DevTokenAuthenticator:
    def __init__(self, token_file: Path) -> None:
        self._token = token_file.read_text(encoding="utf-8").strip().encode()
        if len(self._token) < 32:
            raise ValueError("the development token is too short")

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            raise Unauthorized("A valid bearer token is required.", headers={"www-authenticate": 'Bearer realm="carevault"'})
        return DEV_PRINCIPAL


class RefuseAll:
    """No authentication method configured: every request is refused."""

    async def authenticate(self, request: Request) -> Principal:
        raise Unauthorized("No authentication method is configured on this server.")
