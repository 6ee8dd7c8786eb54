"""Development authentication: one static bearer token from a local file.

Only for `make run` and the tests until the OAuth2 issue lands; the settings
refuse it outside the dev environment.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request

from carevault_api.auth.principal import Principal
from carevault_common.errors import Unauthorized

DEV_TENANT = "dev"
DEV_SUBJECT = "dev-user"


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
        return Principal(DEV_TENANT, DEV_SUBJECT)


class RefuseAll:
    """No authentication method configured: every request is refused."""

    def authenticate(self, request: Request) -> Principal:
        raise Unauthorized("No authentication method is configured on this server.")
