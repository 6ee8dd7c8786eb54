"""Audit events of sign-in and of the token and revocation endpoints (docs/audit.md).

Each is stored before the answer leaves (fail closed: if it cannot be, the answer is
a 503 and, for a success, nothing is issued: the authorization code is rolled back
with the request's session, the token response is never sent). Who: the account
(never what was typed when no account matches), the client, the tenant (``*`` when
none is known). What: codes only (grant type, reason, factor); never a password,
code, token, assertion or key.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api import audit
from carevault_api.accounts import repository as accounts
from carevault_api.accounts.service import SignIn, SignInRefused
from carevault_api.oauth.errors import OAuthError
from carevault_api.oauth.service import TokenTrace

UNKNOWN_TENANT = "*"


async def succeeded(request: Request, session: AsyncSession, signed_in: SignIn, client_id: str) -> None:
    """In the request's session, with the authorization code it issued: both or neither."""
    user = signed_in.user
    await audit.record(
        request,
        "signin.success",
        session=session,
        outcome=302,  # the redirect carrying the code
        tenant=user.tenant,
        subject=user.id,
        client_id=client_id,
        details={"factor": signed_in.factor},
    )


async def refused(request: Request, session: AsyncSession, refused: SignInRefused, typed_tenant: str, client_id: str) -> None:
    if refused.user is not None:
        tenant, subject = refused.user.tenant, refused.user.id
    else:  # a tenant name typed on the form is kept only if it is one
        known = typed_tenant and len(typed_tenant) <= 64 and await accounts.get_tenant(session, typed_tenant) is not None
        tenant, subject = (typed_tenant if known else UNKNOWN_TENANT), None
    await audit.record(
        request,
        refused.event,
        session=session,
        outcome=refused.problem.status,
        tenant=tenant,
        subject=subject,
        client_id=client_id,
        details={"reason": refused.reason, **refused.details},
    )


def _details(trace: TokenTrace) -> dict[str, str | bool]:
    details: dict[str, str | bool] = {"grant_type": trace.grant}
    if trace.family_revoked:
        details["family_revoked"] = True
    return details


async def token_issued(request: Request, trace: TokenTrace) -> None:
    await audit.record(
        request,
        "token.issued",
        outcome=200,
        tenant=trace.tenant or UNKNOWN_TENANT,
        subject=trace.subject,
        client_id=trace.client_id,
        details=_details(trace) | {"scope": trace.scope, "dpop_bound": trace.bound},
    )


async def token_refused(request: Request, trace: TokenTrace, error: OAuthError) -> None:
    await audit.record(
        request,
        "token.refused",
        outcome=error.status,
        tenant=trace.tenant or UNKNOWN_TENANT,
        subject=trace.subject,
        client_id=trace.client_id,
        details=_details(trace) | {"error": error.error, "reason": error.reason},
    )


async def token_revoked(request: Request, trace: TokenTrace) -> None:
    await audit.record(
        request,
        "token.revoked",
        outcome=200,
        tenant=trace.tenant or UNKNOWN_TENANT,
        subject=trace.subject,
        client_id=trace.client_id,
        details={"revoked": trace.revoked},
    )
