from __future__ import annotations

from pathlib import Path

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from carevault_records.fhir.capability import API_SERVED_TYPES, OPERATIONS, TYPE_INTERACTIONS, build_capability_statement
from carevault_records.fhir.compartment import DIRECTORY_TYPES, SUPPORTED_TYPES
from carevault_records.fhir.search import FhirSearchError, parse_search_query
from carevault_records.fhir.search_params import PATIENT_SCOPE_PARAMS, SEARCH_PARAMS

DOCS = Path(__file__).resolve().parents[4] / "docs" / "fhir.md"


def test_the_statement_is_valid_and_lists_exactly_what_is_supported() -> None:
    statement = build_capability_statement(base_url="https://cv.example/fhir")
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert [i["code"] for i in rest["interaction"]] == ["transaction", "batch"]
    assert [r["type"] for r in rest["resource"]] == sorted(SUPPORTED_TYPES | API_SERVED_TYPES.keys())
    for resource in rest["resource"]:
        served = API_SERVED_TYPES.get(resource["type"])
        expected = served.interactions if served is not None else TYPE_INTERACTIONS
        assert tuple(i["code"] for i in resource["interaction"]) == expected
        assert resource["conditionalCreate"] is (resource["type"] in DIRECTORY_TYPES)
        assert resource["updateCreate"] is False
    assert build_capability_statement(update_create=True)["rest"][0]["resource"][0]["updateCreate"] is True
    (patient,) = [r for r in rest["resource"] if r["type"] == "Patient"]
    assert [o["name"] for o in patient["operation"]] == [o.name for o in OPERATIONS] == ["everything", "rotate-key", "erase"]


@pytest.mark.parametrize("resource_type", sorted(SUPPORTED_TYPES - API_SERVED_TYPES.keys()))
def test_every_listed_parameter_is_accepted_and_no_other(resource_type: str) -> None:
    statement = build_capability_statement()
    (resource,) = [r for r in statement["rest"][0]["resource"] if r["type"] == resource_type]
    scope = [("_id", "p")] if resource_type == "Patient" else [("patient", "p")] if PATIENT_SCOPE_PARAMS.get(resource_type) else []
    examples = {"token": "x", "date": "2020-01-02", "reference": "Patient/p"}
    listed = {p["name"] for p in resource["searchParam"]}
    for param in resource["searchParam"]:
        value = "ge2020" if param["name"] == "_lastUpdated" else examples[param["type"]]
        parse_search_query(resource_type, [*scope, (param["name"], value)])
    for name in {"patient", "subject", "code", "date", "identifier", "status"} - listed:
        with pytest.raises(FhirSearchError):
            parse_search_query(resource_type, [*scope, (name, "x")])


def test_docs_name_every_type_and_parameter() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for resource_type, params in SEARCH_PARAMS.items():
        assert f"| {resource_type} |" in text, resource_type
        for name in params:
            assert f"`{name}`" in text, (resource_type, name)
