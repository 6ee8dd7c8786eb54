"""Which resource types carevault stores, and whose key protects each one.

Patient-compartment types are patient data: every instance belongs to exactly
one patient and is encrypted under that patient's key. Directory types are
tenant data (who and where care is given), stored per tenant with no patient
key. Anything else is not supported. The lists follow the FHIR R4 (4.0.1)
Patient CompartmentDefinition
(http://hl7.org/fhir/R4/compartmentdefinition-patient.html), restricted to the
types the Synthea and HL7 example data use; docs/fhir.md gives the rationale.
``Consent`` and ``AuditEvent`` are served by api from its own storage
(:data:`API_SERVED_TYPES`): records stores none of them, in any interaction.

A compartment resource is keyed by ONE element: the compartment parameter that
names the subject of the record (``owner``). The other parameters of the
CompartmentDefinition (performer, asserter, author, payee, ...) name actors; a
record is not stored a second time under an actor's key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .outcome import FhirError, operation_outcome


@dataclass(frozen=True)
class CompartmentRule:
    """How a patient-compartment type names its patient."""

    resource_type: str
    #: R4 CompartmentDefinition params for this type, as published.
    compartment_params: tuple[str, ...]
    #: The one param that decides the owner (its R4 search param name).
    owner_param: str
    #: The element holding the owner reference (a path from the resource root);
    #: ``id`` for Patient itself.
    owner_element: str


def _rule(resource_type: str, params: str, owner_param: str, element: str) -> CompartmentRule:
    return CompartmentRule(resource_type, tuple(params.split()), owner_param, element)


#: Patient-compartment types, with the element that names the owner.
PATIENT_COMPARTMENT: Final[Mapping[str, CompartmentRule]] = {
    r.resource_type: r
    for r in (
        _rule("Patient", "{def} link", "_id", "id"),
        _rule("AllergyIntolerance", "patient recorder asserter", "patient", "patient"),
        _rule("CarePlan", "patient performer", "patient", "subject"),
        _rule("CareTeam", "patient participant", "patient", "subject"),
        _rule("Claim", "patient payee", "patient", "patient"),
        _rule("Condition", "patient asserter", "patient", "subject"),
        _rule("DiagnosticReport", "subject", "subject", "subject"),
        _rule("DocumentReference", "subject author", "subject", "subject"),
        _rule("Encounter", "patient", "patient", "subject"),
        _rule("ExplanationOfBenefit", "patient payee", "patient", "patient"),
        _rule("Goal", "patient", "patient", "subject"),
        _rule("ImagingStudy", "patient", "patient", "subject"),
        _rule("Immunization", "patient", "patient", "patient"),
        _rule("Media", "subject", "subject", "subject"),
        _rule("MedicationAdministration", "patient performer subject", "patient", "subject"),
        _rule("MedicationRequest", "subject", "subject", "subject"),
        _rule("MedicationStatement", "subject", "subject", "subject"),
        _rule("Observation", "subject performer", "subject", "subject"),
        _rule("Procedure", "patient performer", "patient", "subject"),
        _rule("Provenance", "patient", "patient", "target"),
        # Not in the R4 Patient compartment: carevault keys a Binary (file content)
        # by its securityContext, which must name the patient (docs/fhir.md).
        _rule("Binary", "", "securityContext", "securityContext"),
    )
}

#: Patient-data types that the R4 CompartmentDefinition does not list (carevault's choice).
CAREVAULT_COMPARTMENT_ADDITIONS: Final[frozenset[str]] = frozenset({"Binary"})

#: Tenant directory types: never in the R4 Patient compartment, no patient key.
DIRECTORY_TYPES: Final[frozenset[str]] = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "Medication"})

PATIENT_COMPARTMENT_TYPES: Final[frozenset[str]] = frozenset(PATIENT_COMPARTMENT)
SUPPORTED_TYPES: Final[frozenset[str]] = PATIENT_COMPARTMENT_TYPES | DIRECTORY_TYPES

#: Types api serves itself (services/api: consents/, audit/), where it can read them
#: without a patient key. A Consent stored here, encrypted, would look like a grant
#: while api never sees it to enforce it, so records refuses to hold either type.
API_SERVED_TYPES: Final[Mapping[str, str]] = {
    "AuditEvent": "AuditEvent is written by the server only: read the audit trail with GET /fhir/AuditEvent",
    "Consent": "Consent is served by api, not stored with patient records: grant one with POST /fhir/Consent, "
    "read it with GET /fhir/Consent/{id}, revoke it with DELETE /fhir/Consent/{id}",
}

# A local literal reference to a Patient, optionally versioned. Absolute URLs,
# urn:uuid and logical (identifier-only) references name no local patient.
_PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def served_by_api(resource_type: str, entry: str | None = None) -> str | None:
    """Why records refuses ``resource_type`` (api serves it), naming the Bundle
    ``entry`` when there is one; None for a type records may store."""
    reason = API_SERVED_TYPES.get(resource_type)
    if reason is None:
        return None
    return f"{entry}: {reason}" if entry else reason


def is_patient_data(resource_type: str) -> bool:
    """True for types stored under a patient's key."""
    return resource_type in PATIENT_COMPARTMENT


def is_directory(resource_type: str) -> bool:
    """True for tenant directory types (no patient key)."""
    return resource_type in DIRECTORY_TYPES


def patient_reference_id(reference: object) -> str | None:
    """The id in a Reference dict that points at a local Patient, else None."""
    if not isinstance(reference, dict):
        return None
    value = reference.get("reference")
    if not isinstance(value, str):
        return None
    match = _PATIENT_REF.fullmatch(value)
    return match.group(1) if match else None


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The id of the patient a compartment resource belongs to.

    Patient -> its own ``id``; other compartment types -> the id of the
    ``Patient/{id}`` reference in their owner element (a list element such as
    ``Provenance.target`` must name exactly one distinct patient). None for a
    directory or unsupported type, a missing or non-Patient owner, or an
    ambiguous one.
    """
    rule = PATIENT_COMPARTMENT.get(str(resource.get("resourceType")))
    if rule is None:
        return None
    value = resource.get(rule.owner_element)
    if rule.owner_element == "id":
        return value if isinstance(value, str) and value else None
    if isinstance(value, list):
        found = {pid for pid in map(patient_reference_id, value) if pid is not None}
        return found.pop() if len(found) == 1 else None
    return patient_reference_id(value)


def require_patient(resource: Mapping[str, Any], expression_prefix: str | None = None) -> str:
    """:func:`patient_of`, or a 422 :class:`FhirError` saying what is missing."""
    patient_id = patient_of(resource)
    if patient_id is not None:
        return patient_id
    resource_type = str(resource.get("resourceType"))
    rule = PATIENT_COMPARTMENT.get(resource_type)
    if rule is None:
        raise ValueError(f"{resource_type} is not a patient-compartment type")
    prefix = expression_prefix or resource_type
    if rule.owner_element == "id":
        diagnostics = "A Patient needs an id before it can be stored"
    elif rule.owner_element == "securityContext":
        diagnostics = "A Binary is stored as patient data: Binary.securityContext must reference a Patient on this server (Patient/{id})"
    elif rule.owner_element == "target":
        diagnostics = "A Provenance is stored as patient data: Provenance.target must reference exactly one Patient (Patient/{id})"
    else:
        diagnostics = (
            f"{resource_type} is stored as patient data: {resource_type}.{rule.owner_element} "
            "must reference a Patient on this server (Patient/{id})"
        )
    raise FhirError(
        operation_outcome("error", "required", diagnostics, f"{prefix}.{rule.owner_element}"),
        status=422,
    )
