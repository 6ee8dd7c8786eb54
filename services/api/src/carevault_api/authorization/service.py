"""Checks of the permission matrix for non-FHIR endpoints (administration, consents).

Administrative permissions also need a second factor in the session that
issued the token (invariant 6); the development token never has one.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from carevault_api.auth.principal import Principal
from carevault_api.authorization.matrix import ADMINISTRATIVE, Permission, Reach, widest
from carevault_common.errors import Forbidden


class SecondFactorNeeded(Forbidden):
    code, title = "second-factor-required", "A second factor is required"


@dataclass(frozen=True, slots=True)
class Grant:
    """What the caller may do for one permission: how far (``reach``) and as whom."""

    principal: Principal
    permission: Permission
    reach: Reach

    def covers_tenant(self, tenant: str) -> bool:
        return self.reach == Reach.PLATFORM or (self.reach == Reach.TENANT and tenant == self.principal.tenant)


def check(principal: Principal, permission: Permission) -> Grant:
    if principal.break_glass is not None:
        raise Forbidden("A break-glass token reads one patient's records and nothing else.")
    reach = widest(principal.roles, permission)
    if reach == Reach.NONE or (principal.development and permission in ADMINISTRATIVE):
        raise Forbidden(f"Your roles do not allow {permission.value}.")
    if permission in ADMINISTRATIVE and not principal.second_factor:
        raise SecondFactorNeeded("Administrative actions need a session signed in with a second factor.")
    return Grant(principal, permission, reach)


def require(permission: Permission) -> Callable[[Request], Coroutine[Any, Any, Grant]]:
    """A dependency: authenticate, then check ``permission`` (and the second factor if administrative)."""

    async def dependency(request: Request) -> Grant:
        principal: Principal = await request.app.state.authenticator.authenticate(request)
        return check(principal, permission)

    return dependency
