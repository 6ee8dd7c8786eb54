"""Which FHIR types are patient data, and which element names their patient.

api's own copy of records' compartment table (services never import each
other): only what authorization needs. tests/security/test_permission_matrix_doc.py
checks it against records' table so the two cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

#: Patient-compartment types -> the element holding the owner reference.
OWNER_ELEMENT: Final[Mapping[str, str]] = {
    "Patient": "id",
    "AllergyIntolerance": "patient",
    "CarePlan": "subject",
    "CareTeam": "subject",
    "Claim": "patient",
    "Condition": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "Encounter": "subject",
    "ExplanationOfBenefit": "patient",
    "Goal": "subject",
    "ImagingStudy": "subject",
    "Immunization": "patient",
    "Media": "subject",
    "MedicationAdministration": "subject",
    "MedicationRequest": "subject",
    "MedicationStatement": "subject",
    "Observation": "subject",
    "Procedure": "subject",
    "Provenance": "target",
    # carevault keys file content (Binary) to the patient its securityContext names.
    "Binary": "securityContext",
}
DIRECTORY_TYPES: Final[frozenset[str]] = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "Medication"})
#: Search parameters that name the patient of a search.
PATIENT_PARAMS: Final[frozenset[str]] = frozenset({"patient", "subject"})

_PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_patient_data(resource_type: str) -> bool:
    return resource_type in OWNER_ELEMENT


def patient_reference_id(reference: object) -> str | None:
    if not isinstance(reference, dict):
        return None
    value = reference.get("reference")
    if not isinstance(value, str):
        return None
    match = _PATIENT_REF.fullmatch(value)
    return match.group(1) if match else None


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The patient a compartment resource belongs to (records' rule), else None."""
    element = OWNER_ELEMENT.get(str(resource.get("resourceType")))
    if element is None:
        return None
    value = resource.get(element)
    if element == "id":
        return value if isinstance(value, str) and value else None
    if isinstance(value, list):
        found = {pid for pid in map(patient_reference_id, value) if pid is not None}
        return found.pop() if len(found) == 1 else None
    return patient_reference_id(value)


def patient_from_param(value: str) -> str | None:
    """``Patient/123`` or ``123`` (one value, no list) -> ``123``."""
    if "," in value:
        return None
    candidate = value.removeprefix("Patient/")
    return candidate if _ID.fullmatch(candidate) else None
