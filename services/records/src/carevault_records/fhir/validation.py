"""Validate one resource dict against the FHIR models of ``fhir.resources``.

fhir.resources 8.3.0 ships R5 (its default), R4B (4.3.0) and STU3, and no
plain R4. carevault speaks R4 (4.0.1) and validates with the R4B models: R4B
changed no element of the types carevault supports in a way that rejects
R4 data (every Synthea and HL7 R4 example resource validates; docs/fhir.md).

Validation is structural: element names, cardinality of required elements,
datatypes and their regexes, choice types ([x]) and contained resources. It
does not check terminology bindings or profiles (docs/fhir.md).

The resource dict is validated as is and never re-serialised: the caller keeps
and stores the client's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from ._jsonshape import check_json_shape
from .compartment import SUPPORTED_TYPES, served_by_api
from .outcome import FhirError, IssueCode, issue, operation_outcome, outcome_from_issues

#: The FHIR release the models implement.
MODEL_RELEASE: Final = "R4B"
#: At most this many issues are reported for one resource.
MAX_ISSUES: Final = 50

_REQUIRED_TYPES: Final = frozenset({"missing", "model_field_validation.missing"})
_STRUCTURE_TYPES: Final = frozenset(
    {
        "extra_forbidden",
        "json_invalid",
        "json_type",
        "model_type",
        "model_attributes_type",
        "dict_type",
        "list_type",
        "string_type",
        "int_type",
        "float_type",
        "bool_type",
        "decimal_type",
        "model_validation_format",
        "fhir-validation-wrong-resource-type",
        "fhir-validation-missing-resource-type",
    }
)
_MESSAGES: Final[dict[str, str]] = {
    "extra_forbidden": "Unknown element",
    "json_invalid": "Expected a JSON object",
    "model_validation_format": "Expected a JSON object",
}

_classes: dict[str, type[FHIRAbstractModel]] = {}


class FhirValidationError(FhirError):
    """A resource that is not valid FHIR; ``outcome`` lists every problem found."""

    def __init__(self, outcome: dict[str, Any], status: int = 400) -> None:
        super().__init__(outcome, status)


def model_class(resource_type: str) -> type[FHIRAbstractModel]:
    """The R4B model class for a resource type name (cached)."""
    cls = _classes.get(resource_type)
    if cls is None:
        cls = get_fhir_model_class(resource_type)
        _classes[resource_type] = cls
    return cls


def validate_resource(
    resource: object,
    *,
    expected_type: str | None = None,
    supported_types: Collection[str] = SUPPORTED_TYPES,
    expression_prefix: str | None = None,
) -> str:
    """Validate ``resource``; return its resource type.

    Raises :class:`FhirValidationError` (and nothing else): 400 when the body is
    not a resource or breaks FHIR structure rules, 404 when its type is not
    supported here. ``expected_type`` is the type named by the URL (400 on a
    mismatch). ``expression_prefix`` replaces the resource type at the head of
    issue expressions (``Bundle.entry[3].resource``).
    """
    if not isinstance(resource, dict):
        raise _error("structure", "A resource must be a JSON object", expression_prefix)
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise _error("required", "resourceType is missing", _join(expression_prefix, "resourceType"))
    head = expression_prefix or resource_type
    if expected_type is not None and resource_type != expected_type:
        raise _error(
            "invalid",
            f"resourceType {resource_type} does not match the {expected_type} endpoint",
            f"{head}.resourceType",
        )
    if resource_type not in supported_types:
        refusal = served_by_api(resource_type, expression_prefix)
        if refusal is not None:  # a type that exists here, served by api (never inside records)
            raise FhirValidationError(operation_outcome("error", "not-supported", refusal, f"{head}.resourceType"), status=422)
        known = _is_known_type(resource_type)
        raise FhirValidationError(
            operation_outcome(
                "error",
                "not-supported",
                f"Resource type {resource_type} is not supported by this server" if known else "resourceType is not a FHIR resource type",
                f"{head}.resourceType",
            ),
            status=404 if known else 400,
        )
    cls = model_class(resource_type)
    try:
        issues = [issue("error", code, text, where) for code, text, where in check_json_shape(resource, cls, head, MAX_ISSUES)]
    except RecursionError:
        raise _error("too-long", "The resource is nested too deeply", head) from None
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        seen = {where for item in issues for where in item.get("expression", ())}
        issues.extend(i for i in _issues_from(exc, head) if i["expression"][0] not in seen)
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
        # The model library tripped on input it should have reported (e.g. an
        # unknown contained resource type): still only a validation outcome.
        if not issues:
            issues.append(issue("error", "invalid", f"Invalid resource ({type(exc).__name__})", head))
    if issues:
        raise FhirValidationError(outcome_from_issues(issues[:MAX_ISSUES]))
    return resource_type


def _is_known_type(resource_type: str) -> bool:
    try:
        return model_class(resource_type).has_resource_base()
    except ValueError:
        return False


def _issues_from(exc: ValidationError, head: str) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        kind = str(error.get("type", ""))
        message = str(error.get("msg", ""))
        loc = tuple(error.get("loc", ()))
        if kind == "fhir-validation-wrong-resource-type":
            loc = ("resourceType",)
        choice = _choice_of(message)
        if choice is not None:
            text, code = choice
            issues.append(issue("error", code, text[0], _path(head, (*loc, text[1]))))
            continue
        issues.append(issue("error", _code_for(kind), _message_for(kind, message), _path(head, loc)))
    return issues


def _choice_of(message: str) -> tuple[tuple[str, str], IssueCode] | None:
    """The library's one-of-many (choice type [x]) errors, reworded."""
    code: IssueCode
    if "Any of one field value is expected" in message:
        text, code = "Only one type of {} may be present", "structure"
    elif "Expect any of field value" in message:
        text, code = "{} is required", "required"
    else:
        return None
    names = re.findall(r"'([A-Za-z0-9]+)'", message)
    prefix = min(names, key=len) if names else ""
    while prefix and not all(n.startswith(prefix) for n in names):
        prefix = prefix[:-1]
    while prefix and not all(len(n) > len(prefix) and n[len(prefix)].isupper() for n in names):
        prefix = prefix[:-1]
    element = f"{prefix}[x]" if prefix else "[x]"
    return (text.format(element), element), code


def _code_for(kind: str) -> IssueCode:
    if kind in _REQUIRED_TYPES:
        return "required"
    if kind in _STRUCTURE_TYPES or kind.endswith("_type"):
        return "structure"
    return "value"


def _message_for(kind: str, message: str) -> str:
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "fhir-validation-wrong-resource-type":
        return "resourceType does not match the resource"
    return message.removeprefix("Value error, ")


def _path(head: str, loc: tuple[Any, ...]) -> str:
    out = [head]
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}")
    return "".join(out)


def _join(prefix: str | None, name: str) -> str | None:
    return f"{prefix}.{name}" if prefix else None


def _error(code: IssueCode, diagnostics: str, expression: str | None) -> FhirValidationError:
    return FhirValidationError(operation_outcome("error", code, diagnostics, expression))
