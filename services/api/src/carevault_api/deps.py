"""Dependencies of the api routes (Annotated aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.auth.principal import Principal
from carevault_api.secrets import Secrets
from carevault_common.db import session_scope


async def get_principal(request: Request) -> Principal:
    principal: Principal = await request.app.state.authenticator.authenticate(request)
    return principal


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with session_scope(request.app.state.sessions) as session:
        yield session


async def get_secrets(request: Request) -> Secrets:
    secrets: Secrets = request.app.state.secrets
    return secrets


PrincipalDep = Annotated[Principal, Depends(get_principal)]
# scope="function": committed before the response leaves (a 2xx means durable).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SecretsDep = Annotated[Secrets, Depends(get_secrets)]
