"""Who reads the audit trail and erases a patient: the permission matrix
(audit.read, patient.erase, both with a second factor); the dev principal in dev."""

from __future__ import annotations

from carevault_api.audit.permissions import can_erase, can_read_audit
from carevault_api.auth.dev import DEV_PRINCIPAL, DEV_SUBJECT, DEV_TENANT
from carevault_api.auth.principal import Principal, Role


def test_the_dev_principal_is_its_tenants_auditor_and_dpo_in_dev() -> None:
    assert can_read_audit(DEV_PRINCIPAL, DEV_TENANT) and can_erase(DEV_PRINCIPAL, DEV_TENANT)
    assert not can_read_audit(DEV_PRINCIPAL, "other-tenant") and not can_erase(DEV_PRINCIPAL, "other-tenant")
    assert not can_read_audit(Principal(DEV_TENANT, "someone"), DEV_TENANT)
    # Its tenant and subject alone are not the development token.
    assert not can_read_audit(Principal(DEV_TENANT, DEV_SUBJECT), DEV_TENANT)


def _user(role: Role, second_factor: bool = True, tenant: str = "t1") -> Principal:
    return Principal(tenant, f"u-{role.value}", roles=frozenset({role}), second_factor=second_factor)


def test_the_matrix_decides_with_a_second_factor() -> None:
    admin, auditor, platform = _user(Role.TENANT_ADMIN), _user(Role.AUDITOR), _user(Role.PLATFORM_ADMIN)
    assert can_read_audit(admin, "t1") and can_erase(admin, "t1")
    assert not can_read_audit(admin, "t2") and not can_erase(admin, "t2")
    assert can_read_audit(auditor, "t2") and not can_erase(auditor, "t1")
    assert can_read_audit(platform, "t2") and not can_erase(platform, "t1")
    for role in (Role.PATIENT, Role.PRACTITIONER, Role.CLINIC_CLIENT, Role.HOSTING_DOCTOR):
        assert not can_read_audit(_user(role), "t1") and not can_erase(_user(role), "t1")
    no_otp = _user(Role.TENANT_ADMIN, second_factor=False)
    assert not can_read_audit(no_otp, "t1") and not can_erase(no_otp, "t1")
