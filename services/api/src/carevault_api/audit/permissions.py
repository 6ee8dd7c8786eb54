"""Who may read the audit trail and erase a patient, from the permission matrix
(:mod:`carevault_api.authorization.matrix`): ``audit.read`` and ``patient.erase``,
both administrative (a session signed in with a second factor).

The development principal (dev environment only: the dev token is refused
elsewhere) still counts as its tenant's auditor and data-protection officer, as
before roles existed, so that a local mesh can exercise both.
"""

from __future__ import annotations

from carevault_api.auth.principal import Principal
from carevault_api.authorization.matrix import ADMINISTRATIVE, Permission, Reach, widest


def _allowed(principal: Principal, permission: Permission, tenant: str) -> bool:
    if principal.development:
        return principal.tenant == tenant
    if permission in ADMINISTRATIVE and not principal.second_factor:
        return False
    reach = widest(principal.roles, permission)
    return reach == Reach.PLATFORM or (reach == Reach.TENANT and principal.tenant == tenant)


def can_read_audit(principal: Principal, tenant: str) -> bool:
    """May ``principal`` read every audit event of ``tenant``?"""
    return _allowed(principal, Permission.AUDIT_READ, tenant)


def can_erase(principal: Principal, tenant: str) -> bool:
    """May ``principal`` erase a patient of ``tenant`` (GDPR Art. 17)?"""
    return _allowed(principal, Permission.PATIENT_ERASE, tenant)
