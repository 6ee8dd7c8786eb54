"""Consent as FHIR R4 ``Consent``: what carevault reads from a posted Consent and
how it renders a stored one.

Read from the posted resource: ``patient``, ``provision.actor`` (the grantee,
by identifier: ``https://carevault.dev/fhir/sid/user`` or ``.../client``),
``provision.action`` (``access`` = read, ``correct`` = write),
``provision.class`` (resource types; none = every type), ``provision.purpose``
(v3 ActReason), ``policyRule`` (the GDPR legal basis) and
``provision.period.end`` (expiry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carevault_api.authorization.compartment import OWNER_ELEMENT, patient_reference_id
from carevault_api.models_identity import ConsentRecord
from carevault_common.errors import UnprocessableEntity

SID_USER = "https://carevault.dev/fhir/sid/user"
SID_CLIENT = "https://carevault.dev/fhir/sid/client"
LEGAL_BASIS_SYSTEM = "https://carevault.dev/fhir/CodeSystem/gdpr-legal-basis"
#: GDPR Art. 6/9 grounds a health-data consent record may cite.
LEGAL_BASES = frozenset({"art6-1-a", "art9-2-a", "art9-2-c", "art9-2-h", "art9-2-i", "art9-2-j"})
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSES = frozenset({"TREAT", "ETREAT", "CAREMGT", "HPAYMT", "HRESCH", "PUBHLTH", "PATRQT", "HOPERAT"})
ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
ACTIONS = {"access": "read", "correct": "write"}
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"


@dataclass(frozen=True, slots=True)
class ConsentInput:
    patient_id: str
    grantee_kind: str
    grantee_id: str
    resource_types: str
    actions: str
    purpose: str
    legal_basis: str
    expires_at: datetime | None
    status: str


def _invalid(text: str, expression: str) -> UnprocessableEntity:
    return UnprocessableEntity(
        text, extensions={"issues": [{"severity": "error", "code": "invalid", "diagnostics": text, "expression": [expression]}]}
    )


def _codings(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [c for c in value.get("coding", []) if isinstance(c, dict)]
    return []


def parse_consent(body: Any) -> ConsentInput:
    if not isinstance(body, dict) or body.get("resourceType") != "Consent":
        raise _invalid("The body must be a Consent resource.", "Consent")
    status = body.get("status")
    if status not in ("active", "inactive"):
        raise _invalid("Consent.status must be active or inactive.", "Consent.status")
    patient_id = patient_reference_id(body.get("patient"))
    if patient_id is None:
        raise _invalid("Consent.patient must reference Patient/{id}.", "Consent.patient")
    provision = body.get("provision")
    if not isinstance(provision, dict) or provision.get("type", "permit") != "permit":
        raise _invalid("Consent.provision must be a permit.", "Consent.provision")
    grantees = []
    for actor in provision.get("actor", []):
        identifier = (actor.get("reference") or {}).get("identifier") if isinstance(actor, dict) else None
        if isinstance(identifier, dict) and identifier.get("system") in (SID_USER, SID_CLIENT) and isinstance(identifier.get("value"), str):
            grantees.append(("user" if identifier["system"] == SID_USER else "client", identifier["value"]))
    if len(grantees) != 1:
        raise _invalid("Consent.provision.actor must name exactly one user or client by identifier.", "Consent.provision.actor")
    actions = sorted({ACTIONS[c.get("code", "")] for a in provision.get("action", []) for c in _codings(a) if c.get("code") in ACTIONS})
    if not actions:
        raise _invalid("Consent.provision.action must include access (read) and/or correct (write).", "Consent.provision.action")
    classes = provision.get("class", [])
    types = sorted({str(c.get("code")) for c in classes if isinstance(c, dict)}) if classes else ["*"]
    if any(t != "*" and t not in OWNER_ELEMENT for t in types):
        raise _invalid("Consent.provision.class must name patient-data resource types.", "Consent.provision.class")
    purposes = [p.get("code") for p in provision.get("purpose", []) if isinstance(p, dict) and p.get("system") == PURPOSE_SYSTEM]
    if len(purposes) != 1 or purposes[0] not in PURPOSES:
        raise _invalid(f"Consent.provision.purpose needs one {PURPOSE_SYSTEM} code.", "Consent.provision.purpose")
    rules = [c.get("code") for c in _codings(body.get("policyRule")) if c.get("system") == LEGAL_BASIS_SYSTEM]
    if len(rules) != 1 or rules[0] not in LEGAL_BASES:
        raise _invalid(f"Consent.policyRule needs one legal basis from {LEGAL_BASIS_SYSTEM}.", "Consent.policyRule")
    expires_at = None
    end = (provision.get("period") or {}).get("end")
    if end is not None:
        try:
            expires_at = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
        except ValueError:
            raise _invalid("Consent.provision.period.end must be a dateTime.", "Consent.provision.period.end") from None
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    kind, grantee = grantees[0]
    return ConsentInput(
        patient_id, kind, grantee, " ".join(types), " ".join(actions), str(purposes[0]), str(rules[0]), expires_at, str(status)
    )


def _instant(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render(record: ConsentRecord, now: datetime) -> dict[str, Any]:
    expired = (
        record.expires_at is not None and (record.expires_at if record.expires_at.tzinfo else record.expires_at.replace(tzinfo=UTC)) <= now
    )
    provision: dict[str, Any] = {
        "type": "permit",
        "actor": [
            {
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {
                    "identifier": {"system": SID_USER if record.grantee_kind == "user" else SID_CLIENT, "value": record.grantee_id}
                },
            }
        ],
        "action": [
            {"coding": [{"system": ACTION_SYSTEM, "code": code}]} for code, action in ACTIONS.items() if action in record.actions.split()
        ],
        "purpose": [{"system": PURPOSE_SYSTEM, "code": record.purpose}],
    }
    if record.resource_types != "*":
        provision["class"] = [{"system": RESOURCE_TYPES_SYSTEM, "code": t} for t in record.resource_types.split()]
    if record.expires_at is not None:
        provision["period"] = {"end": _instant(record.expires_at)}
    return {
        "resourceType": "Consent",
        "id": record.id,
        "meta": {"versionId": str(record.version), "lastUpdated": _instant(record.updated_at)},
        "status": "inactive" if record.status != "active" or expired else "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{record.patient_id}"},
        "dateTime": _instant(record.created_at),
        "organization": [{"identifier": {"system": "https://carevault.dev/fhir/sid/tenant", "value": record.tenant}}],
        "policyRule": {"coding": [{"system": LEGAL_BASIS_SYSTEM, "code": record.legal_basis}]},
        "provision": provision,
    }
