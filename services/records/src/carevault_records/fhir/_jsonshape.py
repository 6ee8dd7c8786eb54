"""FHIR JSON rules that the fhir.resources models do not enforce.

The models validate in pydantic's lax mode and accept Python field names, so on
their own they take ``"active": "true"``, ``"valueInteger": "3"``,
``"class_fhir": {...}``, ``null`` values, empty objects and arrays, control
characters in strings, and contained resources inside contained resources. FHIR JSON
(http://hl7.org/fhir/R4/json.html) allows none of these. This module walks a
resource once, guided by the model classes' field tables, and reports them.
"""

from __future__ import annotations

import datetime
import decimal
import re
import types
import typing
import uuid
from dataclasses import dataclass
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from .outcome import IssueCode

_BOOL, _INT, _NUM, _STR, _OBJ, _RES, _ANY = range(7)
_EXPECTED: Final = {_BOOL: "a JSON boolean", _INT: "a JSON integer", _NUM: "a JSON number", _STR: "a JSON string"}
_STRING_TYPES: Final = (str, bytes, datetime.date, datetime.datetime, datetime.time, uuid.UUID)
# FHIR strings "SHALL NOT contain Unicode character points below 32, except for u0009
# (horizontal tab), u000D (carriage return) and u000A (line feed)" (R4 datatypes.html).
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True, slots=True)
class _Field:
    is_list: bool
    kind: int
    child: type[FHIRAbstractModel] | None


Problem = tuple[IssueCode, str, str]  # (code, diagnostics, expression)


@dataclass(frozen=True, slots=True)
class _Schema:
    fields: dict[str, _Field]  #: by JSON name
    python_names: frozenset[str]  #: names the library accepts that FHIR JSON does not
    required: tuple[tuple[str, str | None], ...]  #: (element, its "_element" sibling)
    choices: tuple[tuple[str, tuple[str, ...], bool], ...]  #: (prefix, elements, required)


_schemas: dict[type[FHIRAbstractModel], _Schema] = {}


def check_json_shape(resource: dict[str, Any], cls: type[FHIRAbstractModel], head: str, limit: int) -> list[Problem]:
    """Problems with ``resource`` as FHIR JSON, at most ``limit`` of them."""
    found: list[Problem] = []
    _walk(resource, cls, [head], found, limit, in_contained=False)
    return found


def _walk(
    node: dict[str, Any],
    cls: type[FHIRAbstractModel],
    path: list[str],
    found: list[Problem],
    limit: int,
    in_contained: bool,
) -> None:
    schema = _schema(cls)
    fields, python_names = schema.fields, schema.python_names
    for key, value in node.items():
        field = fields.get(key)
        if field is None:
            # Unknown JSON names are reported by the model (extra_forbidden),
            # except the Python names it accepts in place of FHIR ones.
            if key in python_names and len(found) < limit:
                found.append(("structure", "Unknown element", _at(path, "." + key)))
            continue
        if value is None:
            if len(found) < limit:
                found.append(("structure", "null is not allowed in FHIR JSON", _at(path, "." + key)))
            continue
        if field.is_list:
            if not isinstance(value, list):
                continue  # reported by the model
            if not value:
                if len(found) < limit:
                    found.append(("structure", "An array must not be empty", _at(path, "." + key)))
                continue
            for index, item in enumerate(value):
                if item is not None:  # nulls: placeholders in primitive arrays, else the model reports
                    _value(item, field, key, path, f".{key}[{index}]", found, limit, in_contained)
        else:
            _value(value, field, key, path, "." + key, found, limit, in_contained)
    # The model checks these only when every element validated; check them
    # here so that one pass reports every problem.
    for element, extension in schema.required:
        if node.get(element) is None and not (extension and node.get(extension)) and len(found) < limit:
            found.append(("required", f"{element} is required", _at(path, "." + element)))
    for prefix, elements, required in schema.choices:
        present = sum(1 for element in elements if node.get(element) is not None)
        if present > 1 and len(found) < limit:
            found.append(("structure", f"Only one type of {prefix}[x] may be present", _at(path, f".{prefix}[x]")))
        elif required and not present and len(found) < limit:
            found.append(("required", f"{prefix}[x] is required", _at(path, f".{prefix}[x]")))


def _value(
    value: Any,
    field: _Field,
    key: str,
    path: list[str],
    step: str,
    found: list[Problem],
    limit: int,
    in_contained: bool,
) -> None:
    kind = field.kind
    if kind == _OBJ:
        if isinstance(value, dict) and field.child is not None:
            if not value:
                if len(found) < limit:
                    found.append(("structure", "An object must not be empty", _at(path, step)))
                return
            path.append(step)
            _walk(value, field.child, path, found, limit, in_contained)
            path.pop()
        return
    if kind == _RES:
        if isinstance(value, dict):
            _contained(value, key, path, step, found, limit, in_contained)
        return
    if kind == _ANY:
        return
    ok = (
        type(value) is bool
        if kind == _BOOL
        else type(value) is int
        if kind == _INT
        else type(value) in (int, float)
        if kind == _NUM
        else type(value) is str
    )
    if not ok and len(found) < limit:
        found.append(("structure", f"Expected {_EXPECTED[kind]}", _at(path, step)))
    elif ok and kind == _STR and _CONTROL.search(value) is not None and len(found) < limit:
        found.append(("invalid", "Strings must not contain control characters other than tab, CR and LF", _at(path, step)))


def _contained(
    value: dict[str, Any],
    key: str,
    path: list[str],
    step: str,
    found: list[Problem],
    limit: int,
    in_contained: bool,
) -> None:
    if in_contained and len(found) < limit:
        found.append(("invariant", "A contained resource must not contain resources (dom-2)", _at(path, step)))
        return
    resource_type = value.get("resourceType")
    cls: type[FHIRAbstractModel] | None = None
    if isinstance(resource_type, str):
        try:
            cls = get_fhir_model_class(resource_type)
        except ValueError:
            cls = None
    if cls is None or not cls.has_resource_base():
        if len(found) < limit:
            found.append(("structure", "A contained resource needs a valid resourceType", _at(path, step)))
        return
    path.append(step)
    _walk(value, cls, path, found, limit, in_contained=key == "contained" or in_contained)
    path.pop()


def _at(path: list[str], step: str) -> str:
    return "".join(path) + step


def _schema(cls: type[FHIRAbstractModel]) -> _Schema:
    cached = _schemas.get(cls)
    if cached is None:
        fields: dict[str, _Field] = {}
        python_names: set[str] = {"resource_type", "fhir_comments"}
        alias_of: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            if name == "fhir_comments":
                continue
            alias = info.alias or name
            alias_of[name] = alias
            if alias != name:
                python_names.add(name)
            is_list, kind, child = _analyse(info.annotation)
            fields[alias] = _Field(is_list, kind, child)
        blank = cls.model_construct()
        required = tuple(
            (alias_of[name], alias_of.get(extension) if extension else None) for name, extension in blank.get_required_fields()
        )
        choices = tuple(
            (
                prefix,
                tuple(alias_of[n] for n in names),
                bool((cls.model_fields[names[0]].json_schema_extra or {}).get("one_of_many_required")),  # type: ignore[union-attr]
            )
            for prefix, names in blank.get_one_of_many_fields().items()
        )
        cached = _Schema(fields, frozenset(python_names), required, choices)
        _schemas[cls] = cached
    return cached


def _analyse(annotation: Any) -> tuple[bool, int, type[FHIRAbstractModel] | None]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _analyse(members[0])
        kinds = {_analyse(m) for m in members}
        return kinds.pop() if len(kinds) == 1 else (False, _ANY, None)
    if origin is list:
        _, kind, child = _analyse(typing.get_args(annotation)[0])
        return True, kind, child
    if origin is typing.Annotated:
        return _analyse(typing.get_args(annotation)[0])
    if annotation is bool:
        return False, _BOOL, None
    if annotation is int:
        return False, _INT, None
    if annotation is decimal.Decimal or annotation is float:
        return False, _NUM, None
    if isinstance(annotation, type) and issubclass(annotation, _STRING_TYPES):
        return False, _STR, None
    get_model = getattr(annotation, "get_model_klass", None)
    if get_model is not None:
        model = get_model()
        if getattr(annotation, "__name__", "") == "ResourceType":
            return False, _RES, None
        return False, _OBJ, model
    if getattr(annotation, "__module__", "").startswith("pydantic"):
        return False, _STR, None  # AnyUrl and friends: strings in JSON
    return False, _ANY, None
