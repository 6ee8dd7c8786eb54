"""Who may read the audit trail and erase a patient: the hooks the roles of the
OAuth2/accounts issue plug into.

Until roles exist, the Principal carries a tenant and a subject only. These
functions read ``principal.roles`` when the Principal has it (the OAuth2 issue adds
it); without it, only the development principal (dev environment only: the dev
token is refused elsewhere) counts as the tenant's auditor and data-protection
officer.
"""

from __future__ import annotations

from carevault_api.auth.dev import DEV_SUBJECT, DEV_TENANT
from carevault_api.auth.principal import Principal

AUDITOR_ROLES = frozenset({"auditor", "dpo"})
ERASURE_ROLES = frozenset({"dpo"})


def _roles(principal: Principal) -> frozenset[str]:
    roles = getattr(principal, "roles", None)
    if roles is not None:
        return frozenset(roles)
    if (principal.tenant, principal.subject) == (DEV_TENANT, DEV_SUBJECT):
        return AUDITOR_ROLES | ERASURE_ROLES
    return frozenset()


def can_read_audit(principal: Principal, tenant: str) -> bool:
    """May ``principal`` read every audit event of ``tenant``?"""
    return principal.tenant == tenant and bool(_roles(principal) & AUDITOR_ROLES)


def can_erase(principal: Principal, tenant: str) -> bool:
    """May ``principal`` erase a patient of ``tenant`` (GDPR Art. 17)?"""
    return principal.tenant == tenant and bool(_roles(principal) & ERASURE_ROLES)
