"""THE permission matrix: which role may do what, and how far it reaches.

This is the only place roles are mapped to permissions. docs/security-access.md
shows it as a table, and tests/security/test_permission_matrix_doc.py keeps the
two identical.

Reach, from narrowest to widest:
- ``self``: the caller's own patient record (a patient user, or a representative
  linked to that patient);
- ``consent``: patients who granted the caller an active, unexpired consent
  covering the resource type and the action (any tenant);
- ``tenant``: the caller's own tenant;
- ``platform``: every tenant.

SMART scopes in the token narrow this further; they never widen it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from carevault_api.auth.principal import Role


class Permission(StrEnum):
    PATIENT_DATA_READ = "patient-data.read"
    PATIENT_DATA_WRITE = "patient-data.write"
    PATIENT_REGISTER = "patient.register"
    DIRECTORY_READ = "directory.read"
    DIRECTORY_WRITE = "directory.write"
    CONSENT_GRANT = "consent.grant"
    CONSENT_READ = "consent.read"
    CONSENT_MANAGE = "consent.manage"
    USERS_MANAGE = "users.manage"
    CLIENTS_MANAGE = "clients.manage"
    ROLES_ASSIGN = "roles.assign"
    AUDIT_READ = "audit.read"
    BREAK_GLASS = "break-glass.recover"
    BREAK_GLASS_DECIDE = "break-glass.decide"
    PATIENT_ERASE = "patient.erase"
    ESCROW_MANAGE = "escrow.manage"


class Reach(StrEnum):
    NONE = "—"
    SELF = "self"
    CONSENT = "consent"
    TENANT = "tenant"
    PLATFORM = "platform"


#: Administrative permissions: refused unless the session passed a second factor (invariant 6).
ADMINISTRATIVE: Final[frozenset[Permission]] = frozenset(
    {
        Permission.CONSENT_MANAGE,
        Permission.USERS_MANAGE,
        Permission.CLIENTS_MANAGE,
        Permission.ROLES_ASSIGN,
        Permission.AUDIT_READ,
        Permission.BREAK_GLASS,
        Permission.BREAK_GLASS_DECIDE,
        Permission.PATIENT_ERASE,
        Permission.ESCROW_MANAGE,
    }
)

ROLES_IN_ORDER: Final[tuple[Role, ...]] = (
    Role.PATIENT,
    Role.PRACTITIONER,
    Role.CLINIC_CLIENT,
    Role.TENANT_ADMIN,
    Role.PLATFORM_ADMIN,
    Role.HOSTING_DOCTOR,
    Role.AUDITOR,
)

_ = Reach.NONE
S, C, T, P = Reach.SELF, Reach.CONSENT, Reach.TENANT, Reach.PLATFORM

# Columns follow ROLES_IN_ORDER:
#   patient, practitioner, clinic-client, tenant-admin, platform-admin, hosting-doctor, auditor
_ROWS: Final[dict[Permission, tuple[Reach, ...]]] = {
    Permission.PATIENT_DATA_READ: (S, C, C, _, _, _, _),
    Permission.PATIENT_DATA_WRITE: (S, C, C, _, _, _, _),
    Permission.PATIENT_REGISTER: (S, T, T, _, _, _, _),
    Permission.DIRECTORY_READ: (T, T, T, T, _, _, _),
    Permission.DIRECTORY_WRITE: (_, T, T, T, _, _, _),
    Permission.CONSENT_GRANT: (S, _, _, _, _, _, _),
    Permission.CONSENT_READ: (S, C, C, T, P, _, T),
    Permission.CONSENT_MANAGE: (_, _, _, T, P, _, _),
    Permission.USERS_MANAGE: (_, _, _, T, P, _, _),
    Permission.CLIENTS_MANAGE: (_, _, _, T, P, _, _),
    Permission.ROLES_ASSIGN: (_, _, _, T, P, _, _),
    Permission.AUDIT_READ: (_, _, _, T, P, _, P),
    Permission.BREAK_GLASS: (_, _, _, _, _, P, _),
    Permission.BREAK_GLASS_DECIDE: (_, _, _, T, P, _, _),
    Permission.PATIENT_ERASE: (_, _, _, T, _, _, _),
    Permission.ESCROW_MANAGE: (_, _, _, _, P, _, _),
}

MATRIX: Final[dict[Permission, dict[Role, Reach]]] = {
    permission: dict(zip(ROLES_IN_ORDER, reaches, strict=True)) for permission, reaches in _ROWS.items()
}

_ORDER = (Reach.NONE, Reach.SELF, Reach.CONSENT, Reach.TENANT, Reach.PLATFORM)


def reaches(roles: frozenset[Role], permission: Permission) -> frozenset[Reach]:
    """Every reach the roles give for ``permission`` (empty: not allowed at all)."""
    found = {MATRIX[permission][role] for role in roles if role in MATRIX[permission]}
    found.discard(Reach.NONE)
    return frozenset(found)


def widest(roles: frozenset[Role], permission: Permission) -> Reach:
    found = reaches(roles, permission)
    return max(found, key=_ORDER.index) if found else Reach.NONE


def markdown_table() -> str:
    """The matrix as the Markdown table in docs/security-access.md."""
    lines = [
        "| permission | " + " | ".join(r.value for r in ROLES_IN_ORDER) + " | second factor |",
        "|---|" + "---|" * len(ROLES_IN_ORDER) + "---|",
    ]
    for permission, row in MATRIX.items():
        cells = " | ".join(row[r].value for r in ROLES_IN_ORDER)
        lines.append(f"| {permission.value} | {cells} | {'required' if permission in ADMINISTRATIVE else '—'} |")
    return "\n".join(lines)
