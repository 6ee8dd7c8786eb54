"""Which FHIR types are patient data, and which element names their patient: the
platform's one table (:mod:`carevault_common.compartment`, which records stores
by), plus what authorization alone needs: the search parameters that name a patient.
"""

from __future__ import annotations

import re
from typing import Final

from carevault_common.compartment import DIRECTORY_TYPES, OWNER_ELEMENT, is_patient_data, patient_of, patient_reference_id

__all__ = [
    "DIRECTORY_TYPES",
    "OWNER_ELEMENT",
    "PATIENT_PARAMS",
    "is_patient_data",
    "patient_from_param",
    "patient_of",
    "patient_reference_id",
]

#: Search parameters that name the patient of a search.
PATIENT_PARAMS: Final[frozenset[str]] = frozenset({"patient", "subject"})

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def patient_from_param(value: str) -> str | None:
    """``Patient/123`` or ``123`` (one value, no list) -> ``123``."""
    if "," in value:
        return None
    candidate = value.removeprefix("Patient/")
    return candidate if _ID.fullmatch(candidate) else None
