from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from carevault_records.fhir.compartment import API_SERVED_TYPES, SUPPORTED_TYPES
from carevault_records.fhir.validation import FhirValidationError, validate_resource

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
}


def _with(**changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(OBSERVATION)
    for key, value in changes.items():
        if value is ...:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def _outcome_of(resource: object, **kwargs: Any) -> FhirValidationError:
    with pytest.raises(FhirValidationError) as raised:
        validate_resource(resource, **kwargs)
    OperationOutcome.model_validate(raised.value.outcome)
    return raised.value


def test_a_valid_resource_returns_its_type_and_is_not_changed() -> None:
    resource = _with()
    assert validate_resource(resource) == "Observation"
    assert resource == OBSERVATION


def test_tab_cr_and_lf_are_allowed_in_strings() -> None:
    assert validate_resource(_with(code={"text": "a\tb\r\nc"})) == "Observation"


@pytest.mark.parametrize(
    ("resource", "status", "code", "expression", "text"),
    [
        ([], 400, "structure", None, "JSON object"),
        ({"status": "final"}, 400, "required", None, "resourceType"),
        ({"resourceType": "Bundle", "type": "batch"}, 404, "not-supported", "Bundle.resourceType", "not supported"),
        ({"resourceType": "Nonsense"}, 400, "not-supported", "Nonsense.resourceType", "not a FHIR resource type"),
        ({"resourceType": "HumanName"}, 400, "not-supported", "HumanName.resourceType", "not a FHIR resource type"),
        (_with(status=...), 400, "required", "Observation.status", "status"),
        (_with(unknown=1), 400, "structure", "Observation.unknown", "Unknown element"),
        (_with(effectiveDateTime="2020-13-45"), 400, "value", "Observation.effectiveDateTime", "regex"),
        (_with(component=[{"code": {"text": "a"}}, {"valueString": "b"}]), 400, "required", "Observation.component[1].code", ""),
        (_with(valueString="a", valueBoolean=True), 400, "structure", "Observation.value[x]", "Only one type of value[x]"),
        (_with(subject="Patient/p1"), 400, "structure", "Observation.subject", "JSON object"),
        (_with(valueInteger="3"), 400, "structure", "Observation.valueInteger", "JSON integer"),
        (_with(valueQuantity={"value": "3.5"}), 400, "structure", "Observation.valueQuantity.value", "JSON number"),
        (_with(category=[]), 400, "structure", "Observation.category", "array must not be empty"),
        (_with(code={}), 400, "structure", "Observation.code", "object must not be empty"),
        (_with(issued=None), 400, "structure", "Observation.issued", "null"),
        (_with(code={"text": "a\u0000b"}), 400, "invalid", "Observation.code.text", "control characters"),
        (_with(subject={"reference": "Patient/p1\u001b"}), 400, "invalid", "Observation.subject.reference", "control characters"),
        (_with(status__ext={"id": "x"}), 400, "structure", "Observation.status__ext", "Unknown element"),
        (_with(fhir_comments="x"), 400, "structure", "Observation.fhir_comments", "Unknown element"),
        (_with(contained=[{"id": "x"}]), 400, "structure", "Observation.contained[0]", "resourceType"),
        (_with(contained=[{"resourceType": "Nonsense"}]), 400, "structure", "Observation.contained[0]", "resourceType"),
        (
            _with(contained=[{"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Patient", "id": "q"}]}]),
            400,
            "invariant",
            "Observation.contained[0].contained[0]",
            "dom-2",
        ),
        (_with(contained=[{"resourceType": "Patient", "active": "yes"}]), 400, "structure", "Observation.contained[0].active", "boolean"),
        (
            {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "x"}, "patient": {"reference": "Patient/1"}},
            400,
            "required",
            "Immunization.occurrence[x]",
            "occurrence[x] is required",
        ),
        ({"resourceType": "Encounter", "status": "finished", "class_fhir": {"code": "AMB"}}, 400, "structure", "Encounter.class_fhir", ""),
        ({"resourceType": "Patient", "resource_type": "Observation"}, 400, "structure", "Patient.resource_type", ""),
    ],
)
def test_invalid_resources_get_an_outcome(resource: object, status: int, code: str, expression: str | None, text: str) -> None:
    error = _outcome_of(resource)
    assert error.status == status
    issue = error.outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue.get("expression", [None])[0] == expression
    assert text in issue["diagnostics"]


def test_type_mismatch_with_the_endpoint_and_prefix() -> None:
    error = _outcome_of(_with(), expected_type="Patient", expression_prefix="Bundle.entry[3].resource")
    assert error.outcome["issue"][0]["expression"] == ["Bundle.entry[3].resource.resourceType"]
    error = _outcome_of(_with(status=...), expression_prefix="Bundle.entry[3].resource")
    assert error.outcome["issue"][0]["expression"] == ["Bundle.entry[3].resource.status"]


def test_one_issue_per_error_and_no_values_echoed() -> None:
    secret = "CANARY-7f3a"
    error = _outcome_of(_with(status=..., effectiveDateTime=secret, valueInteger=secret, unknown=secret))
    expressions = sorted(i["expression"][0] for i in error.outcome["issue"])
    assert expressions == ["Observation.effectiveDateTime", "Observation.status", "Observation.unknown", "Observation.valueInteger"]
    assert secret not in orjson.dumps(error.outcome).decode()


def test_supported_types_can_be_narrowed() -> None:
    error = _outcome_of(_with(), supported_types={"Patient"})
    assert error.status == 404


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))] + [path]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))] + [path]
    return [path]


_JUNK: list[Any] = [None, "", " ", "x", 0, -1, 1.5, True, [], {}, [None], {"a": 1}, "2020-99-99", "\u0000", [[]], 10**40]


@pytest.mark.shared_data
def test_mutated_resources_only_ever_raise_validation_errors(shared_data: Path) -> None:
    rng = random.Random(8)
    examples = [orjson.loads(p.read_bytes()) for p in sorted((shared_data / "fhir" / "examples").glob("*-*.json"))]
    examples = [e for e in examples if e.get("resourceType") in SUPPORTED_TYPES and len(orjson.dumps(e)) < 20_000]
    rejected = 0
    for _ in range(1500):
        resource = copy.deepcopy(rng.choice(examples))
        path = rng.choice(_leaves(resource))
        if not path:
            continue
        parent = resource
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = copy.deepcopy(rng.choice(_JUNK))
        outcome = None
        try:
            validate_resource(resource)
        except FhirValidationError as error:
            outcome = error.outcome
        if outcome is not None:
            rejected += 1
            assert outcome["issue"], path
    assert rejected > 1000


@pytest.mark.shared_data
def test_hl7_r4_examples_validate(shared_data: Path) -> None:
    paths = sorted((shared_data / "fhir" / "examples").glob("*-*.json"))
    supported = unsupported = 0
    for path in paths:
        resource = orjson.loads(path.read_bytes())
        if resource["resourceType"] in SUPPORTED_TYPES:
            assert validate_resource(resource) == resource["resourceType"], path.name
            supported += 1
        else:  # AuditEvent, Consent: valid FHIR, served by api, never stored by records
            refused = _outcome_of(resource)
            assert refused.status == 422
            assert refused.outcome["issue"][0]["diagnostics"] == API_SERVED_TYPES[resource["resourceType"]]
            assert validate_resource(resource, supported_types={resource["resourceType"]})
            unsupported += 1
    assert (supported, unsupported) == (29, 8)  # the two Binary examples are supported (files)


@pytest.mark.shared_data
def test_every_resource_of_every_bundle_validates(shared_data: Path) -> None:
    resources = []
    for folder in ("dev", "directory"):
        for path in sorted((shared_data / "fhir" / folder).glob("*.json")):
            resources += [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
    started = time.perf_counter()
    for resource in resources:
        validate_resource(resource)
    elapsed = time.perf_counter() - started
    assert len(resources) == 12_306
    print(f"\nvalidated {len(resources)} resources in {elapsed:.2f} s: {elapsed / len(resources) * 1e6:.0f} us each")
