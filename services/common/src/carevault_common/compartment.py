"""Which FHIR types are patient data, and which element names their patient.

records stores by it (each patient-data instance encrypted under its patient's key)
and api authorizes by it; one table, so the two cannot disagree. Patient-compartment
types are patient data: every instance belongs to exactly one patient. Directory
types are tenant data (who and where care is given), stored per tenant with no
patient key. Anything else is not supported. The lists follow the FHIR R4 (4.0.1)
Patient CompartmentDefinition
(http://hl7.org/fhir/R4/compartmentdefinition-patient.html), restricted to the
types the Synthea and HL7 example data use; docs/fhir.md gives the rationale.

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

#: Patient-compartment type -> the element holding its owner reference.
OWNER_ELEMENT: Final[Mapping[str, str]] = {t: r.owner_element for t, r in PATIENT_COMPARTMENT.items()}

#: Patient-data types that the R4 CompartmentDefinition does not list (carevault's choice).
CAREVAULT_COMPARTMENT_ADDITIONS: Final[frozenset[str]] = frozenset({"Binary"})

#: Tenant directory types: never in the R4 Patient compartment, no patient key.
DIRECTORY_TYPES: Final[frozenset[str]] = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "Medication"})

PATIENT_COMPARTMENT_TYPES: Final[frozenset[str]] = frozenset(PATIENT_COMPARTMENT)
SUPPORTED_TYPES: Final[frozenset[str]] = PATIENT_COMPARTMENT_TYPES | DIRECTORY_TYPES

# A local literal reference to a Patient, optionally versioned. Absolute URLs,
# urn:uuid and logical (identifier-only) references name no local patient.
_PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


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
