"""Who is calling, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from carevault_api.auth.scopes import SmartScope


class Role(StrEnum):
    PATIENT = "patient"
    PRACTITIONER = "practitioner"
    CLINIC_CLIENT = "clinic-client"
    TENANT_ADMIN = "tenant-admin"
    PLATFORM_ADMIN = "platform-admin"
    HOSTING_DOCTOR = "hosting-doctor"
    AUDITOR = "auditor"


#: Roles that may not sign in without a second factor.
SECOND_FACTOR_ROLES = frozenset({Role.TENANT_ADMIN, Role.PLATFORM_ADMIN, Role.HOSTING_DOCTOR, Role.AUDITOR})


class Kind(StrEnum):
    USER = "user"  # a person, signed in through /oauth2/authorize
    CLIENT = "client"  # a clinic's software, client_credentials with private_key_jwt


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request.

    ``subject`` is a user id for people and the client id for clinic software.
    ``scopes`` are the SMART v2 scopes the token grants (the permission matrix is
    checked too: both must allow). ``patient`` is the patient context of a
    patient-facing token (the one patient a ``patient/`` scope reaches).
    ``second_factor``: the session that issued the token passed a second factor.
    ``development``: the development bearer token (dev environment only), which
    predates consents and acts tenant-wide on FHIR data.
    ``break_glass``: the id of the break-glass request a hosting doctor's
    patient-scoped token was issued under (carevault_api.break_glass): such a
    token reads the records of ``patient`` in ``tenant`` and nothing else.
    """

    tenant: str
    subject: str
    kind: Kind = Kind.USER
    roles: frozenset[Role] = frozenset()
    client_id: str | None = None
    scopes: tuple[SmartScope, ...] = ()
    second_factor: bool = False
    patient: str | None = None
    token_id: str | None = None
    development: bool = field(default=False)
    break_glass: str | None = None

    def has_role(self, role: Role) -> bool:
        return role in self.roles
