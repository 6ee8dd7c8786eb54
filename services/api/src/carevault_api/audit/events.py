"""Every audit event carevault records, by name. docs/audit.md lists the same table
(a test keeps them equal); :func:`carevault_api.audit.record` refuses any other name.

Writes of health data leave two events: ``<name>.attempt`` before records is asked
(if it cannot be stored, nothing is asked: fail closed), then ``<name>`` with the
outcome. Reads leave one, stored after records answered and before any byte of the
answer is relayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Code systems of FHIR R4 AuditEvent.
AUDIT_EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DICOM: Final = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL_INTERACTION: Final = "http://hl7.org/fhir/restful-interaction"
CAREVAULT_EVENT: Final = "https://carevault.dev/audit-event"


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str
    category: str  # health-data | erasure | audit | admin | sign-in | break-glass
    action: str  # FHIR AuditEvent.action: C R U D E
    type: Coding
    subtype: Coding | None
    legal_basis: str | None
    summary: str


REST = Coding(AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
APPLICATION_ACTIVITY = Coding(DICOM, "110100", "Application Activity")
AUDIT_LOG_USED = Coding(DICOM, "110101", "Audit Log Used")
SECURITY_ALERT = Coding(DICOM, "110113", "Security Alert")
USER_AUTHENTICATION = Coding(DICOM, "110114", "User Authentication")
LOGIN = Coding(DICOM, "110122", "Login")
LOGOUT = Coding(DICOM, "110123", "Logout")
EMERGENCY_OVERRIDE_STARTED = Coding(DICOM, "110127", "Emergency Override Started")
EMERGENCY_OVERRIDE_STOPPED = Coding(DICOM, "110138", "Emergency Override Stopped")
SECURITY_ROLES_CHANGED = Coding(DICOM, "110136", "Security Roles Changed")
USER_SECURITY_ATTRIBUTES_CHANGED = Coding(DICOM, "110137", "User Security Attributes Changed")


def _rest(code: str) -> Coding:
    return Coding(RESTFUL_INTERACTION, code, code)


def _specs() -> dict[str, EventSpec]:
    specs: list[EventSpec] = []

    def add(name: str, category: str, action: str, type_: Coding, subtype: Coding | None, summary: str, basis: str | None = None) -> None:
        specs.append(EventSpec(name, category, action, type_, subtype, basis, summary))

    # Health data, through /fhir (recorded by api's FHIR relay).
    add("fhir.read", "health-data", "R", REST, _rest("read"), "a resource was read (GET [type]/[id])")
    add("fhir.vread", "health-data", "R", REST, _rest("vread"), "a version was read (GET [type]/[id]/_history/[vid])")
    add("fhir.history", "health-data", "R", REST, _rest("history-instance"), "a resource's history was read")
    add("fhir.search", "health-data", "E", REST, _rest("search-type"), "a search (GET [type]?...); parameter names kept, never values")
    add(
        "fhir.export",
        "health-data",
        "R",
        REST,
        _rest("operation"),
        "Patient/[id]/$everything: the patient's whole record",
        "gdpr-art-15-20",
    )
    for name, action, interaction, summary in (
        ("fhir.create", "C", "create", "a resource was created (POST [type])"),
        ("fhir.update", "U", "update", "a resource was updated (PUT [type]/[id])"),
        ("fhir.delete", "D", "delete", "a resource was deleted (DELETE [type]/[id])"),
        ("fhir.bundle", "E", "transaction", "a transaction or batch Bundle (POST /fhir)"),
        ("fhir.rotate-key", "U", "operation", "Patient/[id]/$rotate-key: the patient key was replaced"),
        ("fhir.operation", "E", "operation", "another operation ($name in details); by GET, no .attempt event"),
        ("fhir.request", "E", "operation", "a /fhir request of no known FHIR shape; by GET, no .attempt event"),
    ):
        add(name + ".attempt", "health-data", action, REST, _rest(interaction), "before: " + summary)
        add(name, "health-data", action, REST, _rest(interaction), summary)
    # Erasure (GDPR Art. 17): the outcome event is the tombstone; it holds no content.
    add("fhir.erase.attempt", "erasure", "D", REST, _rest("operation"), "before Patient/[id]/$erase erases anything", "gdpr-art-17")
    add("fhir.erase", "erasure", "D", REST, _rest("operation"), "Patient/[id]/$erase: outcome (the tombstone)", "gdpr-art-17")
    # The audit trail itself.
    add("audit.query", "audit", "E", AUDIT_LOG_USED, None, "AuditEvent read or searched (auditor or patient view)")
    add("audit.pruned", "audit", "D", AUDIT_LOG_USED, None, "events older than the retention period were pruned", "retention-policy")
    # Sign-in (recorded by the OAuth2 authorization server through audit.record).
    add("signin.success", "sign-in", "E", USER_AUTHENTICATION, LOGIN, "a user signed in (first factor and second factor passed)")
    add("signin.failure", "sign-in", "E", USER_AUTHENTICATION, LOGIN, "a sign-in was refused (wrong password, unknown user, locked)")
    add("signin.mfa.failure", "sign-in", "E", USER_AUTHENTICATION, LOGIN, "a second factor was refused")
    add("signout", "sign-in", "E", USER_AUTHENTICATION, LOGOUT, "a user signed out or a session ended")
    add("token.issued", "sign-in", "E", USER_AUTHENTICATION, LOGIN, "an access token was issued (grant type in details)")
    add("token.refused", "sign-in", "E", USER_AUTHENTICATION, LOGIN, "a token request or a presented token was refused")
    add("token.revoked", "sign-in", "E", USER_AUTHENTICATION, LOGOUT, "a token was revoked")
    # Administrative acts (recorded by the accounts, clients, roles and consents domains).
    for name, type_, summary in (
        ("admin.user.create", USER_SECURITY_ATTRIBUTES_CHANGED, "an account was created"),
        ("admin.user.update", USER_SECURITY_ATTRIBUTES_CHANGED, "an account was changed"),
        ("admin.user.disable", USER_SECURITY_ATTRIBUTES_CHANGED, "an account was disabled"),
        ("admin.user.delete", USER_SECURITY_ATTRIBUTES_CHANGED, "an account was deleted"),
        ("admin.mfa.reset", USER_SECURITY_ATTRIBUTES_CHANGED, "an account's second factor was reset"),
        ("admin.role.grant", SECURITY_ROLES_CHANGED, "a role was granted"),
        ("admin.role.revoke", SECURITY_ROLES_CHANGED, "a role was revoked"),
        ("admin.client.create", APPLICATION_ACTIVITY, "an OAuth2 client was registered"),
        ("admin.client.update", APPLICATION_ACTIVITY, "an OAuth2 client was changed (keys, scopes)"),
        ("admin.client.delete", APPLICATION_ACTIVITY, "an OAuth2 client was removed"),
        ("admin.client.disable", APPLICATION_ACTIVITY, "an OAuth2 client was disabled (its tokens are no longer issued)"),
        ("admin.user.patient-link", USER_SECURITY_ATTRIBUTES_CHANGED, "an account was linked to a patient record (self or representative)"),
        ("admin.consent.grant", APPLICATION_ACTIVITY, "a consent was recorded"),
        ("admin.consent.revoke", APPLICATION_ACTIVITY, "a consent was withdrawn"),
    ):
        action = "C" if name.endswith((".create", ".grant")) else "D" if name.endswith((".delete", ".revoke")) else "U"
        add(name, "admin", action, type_, None, summary)
    # Bulk re-escrow to a new hosting-doctor key (recorded by the escrow_admin domain): counts only.
    add("admin.escrow.export", "admin", "R", SECURITY_ALERT, None, "the escrow packages sealed to one doctor key were exported")
    add("admin.escrow.upload.attempt", "admin", "C", SECURITY_ALERT, None, "before rewrapped escrow packages are sent to keyservice")
    add("admin.escrow.upload", "admin", "C", SECURITY_ALERT, None, "rewrapped escrow packages were stored (counts in details)")
    add("admin.escrow.refused", "admin", "E", SECURITY_ALERT, None, "an escrow export or upload was refused (step and problem code)")
    # A user's own second factors (recorded by the WebAuthn domain through audit.record).
    add("account.webauthn.register", "admin", "C", USER_SECURITY_ATTRIBUTES_CHANGED, None, "a user registered a WebAuthn credential")
    add("account.webauthn.remove", "admin", "D", USER_SECURITY_ATTRIBUTES_CHANGED, None, "a user removed a WebAuthn credential")
    # Break-glass (recorded by the break-glass workflow through audit.record).
    add("breakglass.requested", "break-glass", "C", SECURITY_ALERT, EMERGENCY_OVERRIDE_STARTED, "a break-glass request was filed")
    add("breakglass.approved", "break-glass", "U", SECURITY_ALERT, EMERGENCY_OVERRIDE_STARTED, "a break-glass request was approved")
    add("breakglass.rejected", "break-glass", "U", SECURITY_ALERT, EMERGENCY_OVERRIDE_STOPPED, "a break-glass request was rejected")
    add(
        "breakglass.released",
        "break-glass",
        "R",
        SECURITY_ALERT,
        EMERGENCY_OVERRIDE_STARTED,
        "an escrow package was released to the hosting doctor",
    )
    add(
        "breakglass.document.read",
        "break-glass",
        "R",
        SECURITY_ALERT,
        None,
        "the written request document of a break-glass request was read",
    )
    add(
        "breakglass.token.issued",
        "break-glass",
        "E",
        SECURITY_ALERT,
        EMERGENCY_OVERRIDE_STARTED,
        "a patient-scoped break-glass access token was issued to the hosting doctor",
    )
    add("breakglass.closed", "break-glass", "U", SECURITY_ALERT, EMERGENCY_OVERRIDE_STOPPED, "a break-glass case was closed")
    add(
        "breakglass.refused",
        "break-glass",
        "E",
        SECURITY_ALERT,
        None,
        "a break-glass step was refused (step and problem code in details)",
    )
    return {spec.name: spec for spec in specs}


EVENTS: Final[dict[str, EventSpec]] = _specs()


class UnknownEvent(ValueError):
    """An event name that is not in :data:`EVENTS` (a programming error)."""


def spec(name: str) -> EventSpec:
    try:
        return EVENTS[name]
    except KeyError:
        raise UnknownEvent(f"unknown audit event {name!r}; add it to carevault_api.audit.events and docs/audit.md") from None
