"""Which resource types carevault stores, and whose key protects each one.

The table itself (patient-compartment types and their owner element, directory
types) is :mod:`carevault_common.compartment`, shared with api's authorization;
this module adds what only records does with it. ``Consent`` and ``AuditEvent``
are served by api from its own storage (:data:`API_SERVED_TYPES`): records stores
none of them, in any interaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from carevault_common.compartment import (
    CAREVAULT_COMPARTMENT_ADDITIONS,
    DIRECTORY_TYPES,
    PATIENT_COMPARTMENT,
    PATIENT_COMPARTMENT_TYPES,
    SUPPORTED_TYPES,
    CompartmentRule,
    is_directory,
    is_patient_data,
    patient_of,
    patient_reference_id,
)

from .outcome import FhirError, operation_outcome

__all__ = [
    "API_SERVED_TYPES",
    "CAREVAULT_COMPARTMENT_ADDITIONS",
    "DIRECTORY_TYPES",
    "PATIENT_COMPARTMENT",
    "PATIENT_COMPARTMENT_TYPES",
    "SUPPORTED_TYPES",
    "CompartmentRule",
    "is_directory",
    "is_patient_data",
    "patient_of",
    "patient_reference_id",
    "require_patient",
    "served_by_api",
]

#: Types api serves itself (services/api: consents/, audit/), where it can read them
#: without a patient key. A Consent stored here, encrypted, would look like a grant
#: while api never sees it to enforce it, so records refuses to hold either type.
API_SERVED_TYPES: Final[Mapping[str, str]] = {
    "AuditEvent": "AuditEvent is written by the server only: read the audit trail with GET /fhir/AuditEvent",
    "Consent": "Consent is served by api, not stored with patient records: grant one with POST /fhir/Consent, "
    "read it with GET /fhir/Consent/{id}, revoke it with DELETE /fhir/Consent/{id}",
}


def served_by_api(resource_type: str, entry: str | None = None) -> str | None:
    """Why records refuses ``resource_type`` (api serves it), naming the Bundle
    ``entry`` when there is one; None for a type records may store."""
    reason = API_SERVED_TYPES.get(resource_type)
    if reason is None:
        return None
    return f"{entry}: {reason}" if entry else reason


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
