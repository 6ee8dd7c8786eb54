"""OperationOutcome builders and the one error type of the FHIR domain code.

Everything under ``carevault_records.fhir`` that fails raises a :class:`FhirError`
(or a subclass) carrying an HTTP status and a ready OperationOutcome dict, and
nothing else. Diagnostics never echo values taken from a resource or a query:
they name elements (``expression``) instead, so an outcome can be logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, cast

from carevault_common.errors import FHIR_ISSUE_CODES

IssueSeverity = Literal["fatal", "error", "warning", "information"]

# FHIR R4 IssueType codes (http://hl7.org/fhir/issue-type), all of them.
IssueCode = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
]

Outcome = dict[str, Any]

#: Issue code used for an error answered with a given HTTP status (the table every
#: service renders problems with, so the FHIR layer and the error handler agree).
HTTP_STATUS_ISSUE_CODES: Final[dict[int, IssueCode]] = cast("dict[int, IssueCode]", FHIR_ISSUE_CODES)

#: Reason phrases for the statuses the FHIR layer answers with, used in
#: ``Bundle.entry.response.status`` ("201 Created").
HTTP_REASONS: Final[dict[int, str]] = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def issue_code_for_status(status: int) -> IssueCode:
    """The issue code for an HTTP error status (``processing`` for other 4xx,
    ``exception`` for other 5xx)."""
    code = HTTP_STATUS_ISSUE_CODES.get(status)
    if code is not None:
        return code
    return "exception" if status >= 500 else "processing"


def issue(
    severity: IssueSeverity,
    code: IssueCode,
    diagnostics: str,
    expression: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """One ``OperationOutcome.issue``. ``expression`` is a FHIRPath (or several)."""
    item: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression is not None:
        item["expression"] = [expression] if isinstance(expression, str) else list(expression)
    return item


def outcome_from_issues(issues: Sequence[dict[str, Any]]) -> Outcome:
    """An OperationOutcome holding ``issues`` (at least one, as FHIR requires)."""
    if not issues:
        raise ValueError("an OperationOutcome needs at least one issue")
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def operation_outcome(
    severity: IssueSeverity,
    code: IssueCode,
    diagnostics: str,
    expression: str | Sequence[str] | None = None,
) -> Outcome:
    """An OperationOutcome with a single issue."""
    return outcome_from_issues([issue(severity, code, diagnostics, expression)])


def outcome_for_status(status: int, diagnostics: str, expression: str | Sequence[str] | None = None) -> Outcome:
    """An error OperationOutcome whose issue code follows the HTTP status."""
    return operation_outcome("error", issue_code_for_status(status), diagnostics, expression)


def status_line(status: int) -> str:
    """``"201 Created"``: the form FHIR uses in ``Bundle.entry.response.status``."""
    reason = HTTP_REASONS.get(status)
    return f"{status} {reason}" if reason else str(status)


class FhirError(Exception):
    """A FHIR-level failure: an HTTP status and the OperationOutcome to answer with."""

    def __init__(self, outcome: Outcome, status: int = 400) -> None:
        self.outcome = outcome
        self.status = status
        super().__init__(_first_diagnostics(outcome))


def _first_diagnostics(outcome: Outcome) -> str:
    issues = outcome.get("issue") or []
    if issues and isinstance(issues[0], dict):
        return str(issues[0].get("diagnostics", ""))
    return ""
