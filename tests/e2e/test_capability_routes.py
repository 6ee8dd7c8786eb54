"""The CapabilityStatement (``GET /fhir/metadata``) lists exactly the FHIR routes that
exist (issue 8). The FHIR surface is two apps: api serves some routes itself and
forwards the rest (its catch-all) to records. Both apps are built as the services
build them, and each route is followed the way a request would be: the first api
route that matches; through the catch-all, the first records route. A route added
or removed in either service without records' capability module following fails
here, in both directions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from carevault_api.audit.query import InvalidAuditQuery, parse_query
from carevault_api.config import Settings as ApiSettings
from carevault_api.main import create_app as create_api
from carevault_records.config import Settings as RecordsSettings
from carevault_records.fhir.capability import API_SERVED_TYPES, OPERATIONS, build_capability_statement
from carevault_records.fhir.compartment import API_SERVED_TYPES as REFUSED_BY_RECORDS
from carevault_records.fhir.compartment import SUPPORTED_TYPES
from carevault_records.main import create_app as create_records

#: A request per interaction: (method, path below /fhir/{type}).
PROBES = {
    "read": ("GET", "/an-id"),
    "vread": ("GET", "/an-id/_history/1"),
    "update": ("PUT", "/an-id"),
    "delete": ("DELETE", "/an-id"),
    "history-instance": ("GET", "/an-id/_history"),
    "history-type": ("GET", "/_history"),
    "create": ("POST", ""),
    "search-type": ("GET", ""),
    "patch": ("PATCH", "/an-id"),
}
# Routes that describe the server rather than a resource: not in the statement's resources.
NOT_RESOURCES = {("GET", "/fhir/metadata"), ("GET", "/fhir/.well-known/smart-configuration")}


def _flatten(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.160)
        if inner is not None:
            yield from _flatten(inner.routes)
        elif isinstance(route, APIRoute):
            yield route


def _fhir_routes(app: Any) -> list[APIRoute]:
    return [r for r in _flatten(app.router.routes) if r.path == "/fhir" or r.path.startswith("/fhir/")]


# Settings are not validated: the apps are built, never started (no certificates, no database).
API_ROUTES = _fhir_routes(create_api(ApiSettings.model_construct()))
RECORDS_ROUTES = _fhir_routes(create_records(RecordsSettings.model_construct()))
STATEMENT = build_capability_statement()
RESOURCES = {r["type"]: r for r in STATEMENT["rest"][0]["resource"]}


def _match(routes: list[APIRoute], method: str, path: str) -> APIRoute | None:
    return next((r for r in routes if method in r.methods and r.path_regex.match(path)), None)


def _is_catch_all(route: APIRoute) -> bool:
    return "{path:path}" in route.path


def _is_generic(route: APIRoute) -> bool:
    return "{resource_type}" in route.path


def served(method: str, path: str, resource_type: str | None, interaction: str | None = None) -> bool:
    """Does this request reach a handler meant for it (for ``interaction``, when given:
    ``GET Observation/_history`` reaches the read route, with the id "_history")?"""
    route = _match(API_ROUTES, method, path)
    if route is None:
        return False
    if _is_catch_all(route):
        if resource_type in API_SERVED_TYPES:
            return False  # api keeps these itself; records holds none of them
        route = _match(RECORDS_ROUTES, method, path)
        if route is None or (_is_generic(route) and resource_type not in SUPPORTED_TYPES):
            return False
    return interaction is None or _interaction_of(method, route.path) == interaction


def test_records_refuses_exactly_the_types_api_serves() -> None:
    """What ``served`` assumes: records stores none of api's types (a Consent in a
    Bundle would otherwise be stored as patient data that api never enforces)."""
    assert REFUSED_BY_RECORDS.keys() == API_SERVED_TYPES.keys()
    assert not SUPPORTED_TYPES & API_SERVED_TYPES.keys()


def test_the_catch_all_and_the_generic_routes_are_where_this_test_expects_them() -> None:
    assert any(_is_catch_all(r) for r in API_ROUTES)
    assert sum(_is_generic(r) for r in RECORDS_ROUTES) >= 7


@pytest.mark.parametrize("resource_type", sorted(SUPPORTED_TYPES | API_SERVED_TYPES.keys() | {"Bundle", "Task"}))
def test_each_listed_interaction_has_a_route_and_each_route_is_listed(resource_type: str) -> None:
    listed = {i["code"] for i in RESOURCES[resource_type]["interaction"]} if resource_type in RESOURCES else set()
    reachable = {name for name, (method, tail) in PROBES.items() if served(method, f"/fhir/{resource_type}{tail}", resource_type, name)}
    assert listed == reachable


def test_each_listed_operation_has_a_route() -> None:
    for operation in OPERATIONS:
        path = f"/fhir/{operation.resource_type}/an-id/${operation.name}"
        assert served("GET", path, None) or served("POST", path, None), operation.name
        assert operation.name in {o["name"] for o in RESOURCES[operation.resource_type]["operation"]}


def test_the_system_interactions_have_their_route() -> None:
    assert {i["code"] for i in STATEMENT["rest"][0]["interaction"]} == {"transaction", "batch"}
    assert served("POST", "/fhir", None) and served("POST", "/fhir/", None)


_SEGMENT = r"[A-Za-z]+|\{resource_type\}"
_SHAPES = [
    (re.compile(rf"/fhir/(?P<type>{_SEGMENT})"), {"GET": "search-type", "POST": "create"}),
    (re.compile(rf"/fhir/(?P<type>{_SEGMENT})/\{{\w+\}}"), {"GET": "read", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}),
    (re.compile(rf"/fhir/(?P<type>{_SEGMENT})/\{{\w+\}}/_history"), {"GET": "history-instance"}),
    (re.compile(rf"/fhir/(?P<type>{_SEGMENT})/\{{\w+\}}/_history/\{{\w+\}}"), {"GET": "vread"}),
    (re.compile(rf"/fhir/(?P<type>{_SEGMENT})/_history"), {"GET": "history-type"}),
]
_OPERATION = re.compile(rf"/fhir/(?P<type>{_SEGMENT})(?:/\{{\w+\}})?/\$(?P<name>[a-z-]+)")


def _interaction_of(method: str, path: str) -> str | None:
    """The FHIR interaction a route template serves (None for anything else)."""
    for shape, interactions in _SHAPES:
        if shape.fullmatch(path) is not None and method in interactions:
            return interactions[method]
    return None


def _listed(method: str, path: str) -> bool:
    """Whether the statement lists what this route template serves."""
    if path in ("/fhir", "/fhir/") and method == "POST":
        return {i["code"] for i in STATEMENT["rest"][0]["interaction"]} >= {"transaction", "batch"}
    operation = _OPERATION.fullmatch(path)
    if operation is not None:
        resource = RESOURCES.get(operation["type"], {})
        return operation["name"] in {o["name"] for o in resource.get("operation", [])}
    for shape, interactions in _SHAPES:
        found = shape.fullmatch(path)
        if found is not None and method in interactions:
            resource = RESOURCES.get(found["type"], {})
            return interactions[method] in {i["code"] for i in resource.get("interaction", [])}
    return False


@pytest.mark.parametrize(
    "route", [r for r in API_ROUTES + RECORDS_ROUTES if not _is_catch_all(r) and not _is_generic(r)], ids=lambda r: r.path
)
def test_every_route_of_either_service_is_in_the_statement(route: APIRoute) -> None:
    for method in route.methods:
        if (method, route.path) in NOT_RESOURCES:
            continue
        assert _listed(method, route.path), f"{method} {route.path} is served but not in the CapabilityStatement"


def test_auditevent_search_parameters_are_the_ones_api_accepts() -> None:
    samples = {"reference": "Patient/0b0c6a56-3b1c-4a6e-9d43-6f4c1e2a7b10", "token": "x", "date": "2026-01-02"}
    listed = {p["name"]: p["type"] for p in RESOURCES["AuditEvent"]["searchParam"]}
    for name, kind in listed.items():
        value = "fhir.read" if name == "subtype" else "0" if name == "outcome" else samples[kind]
        parse_query([(name, value)])
    for name in {"patient", "entity", "agent", "subtype", "date", "outcome", "type", "action", "source", "_id"} - listed.keys():
        with pytest.raises(InvalidAuditQuery):
            parse_query([(name, "x")])
