from __future__ import annotations

import pytest

from carevault_records.fhir.compartment import (
    API_SERVED_TYPES,
    CAREVAULT_COMPARTMENT_ADDITIONS,
    DIRECTORY_TYPES,
    PATIENT_COMPARTMENT,
    PATIENT_COMPARTMENT_TYPES,
    SUPPORTED_TYPES,
    is_directory,
    is_patient_data,
    patient_of,
    require_patient,
    served_by_api,
)
from carevault_records.fhir.outcome import FhirError
from carevault_records.fhir.validation import model_class

# The R4 (4.0.1) Patient CompartmentDefinition, for the types carevault keeps
# (http://hl7.org/fhir/R4/compartmentdefinition-patient.html).
R4_PATIENT_COMPARTMENT_PARAMS = {
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "CarePlan": ("patient", "performer"),
    "CareTeam": ("patient", "participant"),
    "Claim": ("patient", "payee"),
    "Condition": ("patient", "asserter"),
    "DiagnosticReport": ("subject",),
    "DocumentReference": ("subject", "author"),
    "Encounter": ("patient",),
    "ExplanationOfBenefit": ("patient", "payee"),
    "Goal": ("patient",),
    "ImagingStudy": ("patient",),
    "Immunization": ("patient",),
    "Media": ("subject",),
    "MedicationAdministration": ("patient", "performer", "subject"),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "Observation": ("subject", "performer"),
    "Patient": ("{def}", "link"),
    "Procedure": ("patient", "performer"),
    "Provenance": ("patient",),
}
# In the R4 Patient compartment, but served by api from its own storage: records holds none.
R4_SERVED_BY_API = {"Consent": ("patient",)}
# Never in the R4 Patient compartment.
R4_NOT_IN_PATIENT_COMPARTMENT = {"Organization", "Location", "Practitioner", "PractitionerRole", "Medication"}


def test_lists_follow_the_r4_compartment_definition() -> None:
    # Binary is carevault's addition: file content keyed by Binary.securityContext (docs/fhir.md).
    assert {"Binary"} == CAREVAULT_COMPARTMENT_ADDITIONS
    assert PATIENT_COMPARTMENT["Binary"].owner_element == "securityContext"
    r4 = {t: r.compartment_params for t, r in PATIENT_COMPARTMENT.items() if t not in CAREVAULT_COMPARTMENT_ADDITIONS}
    assert r4 == R4_PATIENT_COMPARTMENT_PARAMS
    assert R4_NOT_IN_PATIENT_COMPARTMENT == DIRECTORY_TYPES
    assert not PATIENT_COMPARTMENT_TYPES & DIRECTORY_TYPES
    assert SUPPORTED_TYPES == PATIENT_COMPARTMENT_TYPES | DIRECTORY_TYPES
    assert R4_SERVED_BY_API.keys() <= API_SERVED_TYPES.keys()
    assert not SUPPORTED_TYPES & API_SERVED_TYPES.keys()


def test_api_served_types_are_refused_with_the_route_to_use() -> None:
    assert served_by_api("Observation") is None
    reason = served_by_api("Consent", "Bundle.entry[3]")
    assert reason is not None and reason.startswith("Bundle.entry[3]: ") and "POST /fhir/Consent" in reason


@pytest.mark.parametrize("rule", list(PATIENT_COMPARTMENT.values()), ids=lambda r: r.resource_type)
def test_owner_element_exists_in_the_model(rule) -> None:  # type: ignore[no-untyped-def]
    fields = {info.alias or name for name, info in model_class(rule.resource_type).model_fields.items()}
    assert rule.owner_element in fields
    assert rule.owner_param in (*rule.compartment_params, "_id") or rule.resource_type in CAREVAULT_COMPARTMENT_ADDITIONS


def test_every_supported_type_is_a_resource() -> None:
    for resource_type in SUPPORTED_TYPES:
        assert model_class(resource_type).has_resource_base()
    assert is_patient_data("Observation") and not is_directory("Observation")
    assert is_directory("Practitioner") and not is_patient_data("Practitioner")
    assert is_patient_data("Binary") and not is_directory("Binary")
    assert not is_patient_data("Device") and not is_directory("Device")


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"resourceType": "Patient", "id": "p1"}, "p1"),
        ({"resourceType": "Patient"}, None),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}, "p1"),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/p1/_history/3"}}, "p1"),
        ({"resourceType": "Observation", "subject": {"reference": "Group/g1"}}, None),
        ({"resourceType": "Observation", "subject": {"reference": "https://elsewhere/fhir/Patient/p1"}}, None),
        ({"resourceType": "Observation", "subject": {"reference": "urn:uuid:0b6f5c5e-0000-4000-8000-000000000000"}}, None),
        ({"resourceType": "Observation", "subject": {"identifier": {"system": "s", "value": "v"}}}, None),
        ({"resourceType": "Observation", "performer": [{"reference": "Patient/p1"}]}, None),
        ({"resourceType": "Immunization", "patient": {"reference": "Patient/p2"}}, "p2"),
        ({"resourceType": "Claim", "patient": {"reference": "Patient/p3"}}, "p3"),
        ({"resourceType": "Consent", "patient": {"reference": "Patient/p4"}}, None),  # served by api, not patient data here
        (
            {"resourceType": "Provenance", "target": [{"reference": "Observation/o1"}, {"reference": "Patient/p5"}]},
            "p5",
        ),
        ({"resourceType": "Provenance", "target": [{"reference": "Patient/a"}, {"reference": "Patient/b"}]}, None),
        ({"resourceType": "Provenance", "target": [{"reference": "Patient/a"}, {"reference": "Patient/a/_history/2"}]}, "a"),
        ({"resourceType": "Provenance", "target": [{"reference": "Procedure/x"}]}, None),
        ({"resourceType": "Organization", "id": "o"}, None),
        ({"resourceType": "Binary", "id": "b"}, None),
    ],
)
def test_patient_of(resource: dict[str, object], expected: str | None) -> None:
    assert patient_of(resource) == expected


def test_require_patient_explains_what_is_missing() -> None:
    with pytest.raises(FhirError) as raised:
        require_patient({"resourceType": "Observation", "subject": {"reference": "Group/g"}}, "Bundle.entry[2].resource")
    assert raised.value.status == 422
    issue = raised.value.outcome["issue"][0]
    assert issue["code"] == "required"
    assert issue["expression"] == ["Bundle.entry[2].resource.subject"]
    assert "Patient/{id}" in issue["diagnostics"]
    with pytest.raises(FhirError, match=r"Provenance\.target"):
        require_patient({"resourceType": "Provenance", "target": [{"reference": "Procedure/x"}]})
    with pytest.raises(ValueError):
        require_patient({"resourceType": "Organization"})
    assert require_patient({"resourceType": "Encounter", "subject": {"reference": "Patient/e"}}) == "e"
