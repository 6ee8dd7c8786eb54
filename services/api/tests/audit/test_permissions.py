"""The hooks the roles of the OAuth2 issue plug into."""

from __future__ import annotations

from dataclasses import dataclass

from carevault_api.audit.permissions import can_erase, can_read_audit
from carevault_api.auth.dev import DEV_SUBJECT, DEV_TENANT
from carevault_api.auth.principal import Principal


@dataclass(frozen=True)
class WithRoles:
    tenant: str
    subject: str
    roles: tuple[str, ...]


def test_the_dev_principal_is_its_tenants_auditor_and_dpo_in_dev() -> None:
    dev = Principal(DEV_TENANT, DEV_SUBJECT)
    assert can_read_audit(dev, DEV_TENANT) and can_erase(dev, DEV_TENANT)
    assert not can_read_audit(dev, "other-tenant") and not can_erase(dev, "other-tenant")
    assert not can_read_audit(Principal(DEV_TENANT, "someone"), DEV_TENANT)


def test_roles_decide_once_the_principal_carries_them() -> None:
    auditor = WithRoles("t1", "a", ("auditor",))
    dpo = WithRoles("t1", "d", ("dpo",))
    clinician = WithRoles("t1", "c", ("practitioner",))
    assert can_read_audit(auditor, "t1") and not can_erase(auditor, "t1")  # type: ignore[arg-type]
    assert can_read_audit(dpo, "t1") and can_erase(dpo, "t1")  # type: ignore[arg-type]
    assert not can_read_audit(clinician, "t1") and not can_erase(clinician, "t1")  # type: ignore[arg-type]
    assert not can_read_audit(WithRoles(DEV_TENANT, DEV_SUBJECT, ()), DEV_TENANT)  # type: ignore[arg-type]  # roles win over the dev fallback
