"""``/account/webauthn``: a signed-in user's own WebAuthn credentials (register, list,
remove). Thin: the rules are in :mod:`carevault_api.webauthn.service` and here:

- people only (a clinic's software has no second factor), never the development token;
- an account that already has a second factor (TOTP or a credential) adds another only
  from a session that passed one, so a stolen password cannot add the thief's key;
- removing a credential always needs such a session.

Each change is recorded in the audit trail before the answer (and before the session
commits: an event that cannot be stored rolls the change back).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from carevault_api import audit
from carevault_api.accounts import repository as accounts
from carevault_api.auth.principal import Kind, Principal
from carevault_api.authorization.service import SecondFactorNeeded
from carevault_api.deps import PrincipalDep, SessionDep
from carevault_api.models_identity import User
from carevault_api.webauthn import repository, service
from carevault_api.webauthn.schemas import CredentialOut, NewCredential
from carevault_api.webauthn.service import RelyingParty
from carevault_common.app import json_response
from carevault_common.errors import Forbidden

router = APIRouter(prefix="/account/webauthn")
NO_STORE = {"cache-control": "no-store"}


def _rp(request: Request) -> RelyingParty:
    rp: RelyingParty = request.app.state.relying_party
    return rp


async def _account(session: AsyncSession, principal: Principal) -> User:
    if principal.kind != Kind.USER or principal.development:
        raise Forbidden("Security keys belong to people's accounts.")
    user = await accounts.get_user(session, principal.subject)
    if user is None or user.disabled or user.tenant != principal.tenant:
        raise Forbidden("This account can no longer act.")
    return user


async def _may_add(session: AsyncSession, principal: Principal, user: User) -> None:
    has_factor = user.totp_secret is not None or await repository.count_of(session, user.id) > 0
    if has_factor and not principal.second_factor:
        raise SecondFactorNeeded("This account has a second factor: sign in with it before adding another.")


@router.post("/registration/options")
async def registration_options(request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    user = await _account(session, principal)
    await _may_add(session, principal, user)
    response = json_response(await service.registration_options(session, _rp(request), user))
    response.headers.update(NO_STORE)
    return response


@router.post("/registration", status_code=201)
async def register(body: NewCredential, request: Request, principal: PrincipalDep, session: SessionDep) -> CredentialOut:
    user = await _account(session, principal)
    await _may_add(session, principal, user)
    stored = await service.register(session, _rp(request), user, body.credential, body.name)
    await audit.record(
        request,
        "account.webauthn.register",
        outcome=201,
        session=session,
        principal=principal,
        details={"credential": stored.id, "aaguid": stored.aaguid},
    )
    return CredentialOut(id=stored.id, name=stored.name, created_at=stored.created_at, last_used_at=stored.last_used_at)


@router.get("")
async def list_credentials(principal: PrincipalDep, session: SessionDep) -> list[CredentialOut]:
    user = await _account(session, principal)
    return [
        CredentialOut(id=c.id, name=c.name, created_at=c.created_at, last_used_at=c.last_used_at)
        for c in await service.list_credentials(session, user.id)
    ]


@router.delete("/{credential_id}", status_code=204)
async def remove(credential_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    user = await _account(session, principal)
    if not principal.second_factor:
        raise SecondFactorNeeded("Removing a security key needs a session signed in with a second factor.")
    await service.remove(session, user.id, credential_id)
    await audit.record(
        request, "account.webauthn.remove", outcome=204, session=session, principal=principal, details={"credential": credential_id}
    )
    return Response(status_code=204)
