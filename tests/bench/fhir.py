"""FHIR payloads and helpers shared by the scenarios (built once, before any timing)."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import orjson

FHIR_JSON = "application/fhir+json"


def patient_key() -> str:
    """A fresh patient key as the X-Patient-Key header carries it (base64url, 32 bytes, no padding)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def patient(marker: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:carevault:bench", "value": marker}],
        "active": True,
        "name": [{"use": "official", "family": "Benchmark", "given": ["Load", "Test"]}],
        "telecom": [{"system": "phone", "value": "+33 1 23 45 67 89", "use": "home"}],
        "gender": "female",
        "birthDate": "1984-03-17",
        "address": [{"line": ["12 rue de la Paix"], "city": "Paris", "postalCode": "75002", "country": "FR"}],
    }


def observation(patient_id: str) -> dict[str, Any]:
    """A blood-pressure panel of about 1 KB, shaped as vital-sign Observations are."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel with all children optional"}],
            "text": "Blood pressure systolic and diastolic",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-11-02T09:30:00+01:00",
        "performer": [{"display": "Cabinet medical du Parc"}],
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "N",
                        "display": "Normal",
                    }
                ]
            }
        ],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
                "valueQuantity": {"value": 118, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]},
                "valueQuantity": {"value": 76, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
            },
        ],
    }


def dumps(resource: dict[str, Any]) -> bytes:
    return orjson.dumps(resource)


def new_marker() -> str:
    return uuid.uuid4().hex


def created_id(status: int, headers: dict[str, str], body: bytes) -> str:
    """The id the server gave a created resource: from the body, else from Location."""
    if body:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
            return str(parsed["id"])
    location = headers.get("Location") or headers.get("location") or ""
    # .../Type/{id} or .../Type/{id}/_history/{vid}
    parts = [p for p in location.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if parts:
        return parts[-1]
    raise ValueError(f"no id in the answer to a create (status {status})")
