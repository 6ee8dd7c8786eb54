from __future__ import annotations

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from carevault_records.fhir.outcome import (
    HTTP_STATUS_ISSUE_CODES,
    FhirError,
    issue_code_for_status,
    operation_outcome,
    outcome_for_status,
    outcome_from_issues,
    status_line,
)


def test_operation_outcome_is_valid_fhir() -> None:
    outcome = operation_outcome("error", "required", "status is missing", "Observation.status")
    assert outcome == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "required", "diagnostics": "status is missing", "expression": ["Observation.status"]}],
    }
    OperationOutcome.model_validate(outcome)


def test_expression_is_optional_and_may_be_several() -> None:
    assert "expression" not in operation_outcome("information", "informational", "ok")["issue"][0]
    assert operation_outcome("error", "invalid", "x", ["A.b", "A.c"])["issue"][0]["expression"] == ["A.b", "A.c"]


def test_an_outcome_needs_an_issue() -> None:
    with pytest.raises(ValueError):
        outcome_from_issues([])


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid"),
        (403, "forbidden"),
        (404, "not-found"),
        (410, "deleted"),
        (412, "conflict"),
        (422, "processing"),
        (418, "processing"),
        (503, "transient"),
        (599, "exception"),
    ],
)
def test_issue_code_for_status(status: int, code: str) -> None:
    assert issue_code_for_status(status) == code
    assert outcome_for_status(status, "x")["issue"][0]["code"] == code


def test_every_mapped_code_is_an_r4_issue_type() -> None:
    for status, code in HTTP_STATUS_ISSUE_CODES.items():
        OperationOutcome.model_validate(outcome_for_status(status, "x"))
        assert code


def test_status_line_and_error() -> None:
    assert status_line(201) == "201 Created"
    assert status_line(299) == "299"
    error = FhirError(operation_outcome("error", "not-found", "gone"), 404)
    assert error.status == 404
    assert str(error) == "gone"
