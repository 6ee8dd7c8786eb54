"""Dependencies of the api routes (Annotated aliases)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from carevault_api.auth.principal import Principal


def get_principal(request: Request) -> Principal:
    principal: Principal = request.app.state.authenticator.authenticate(request)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
