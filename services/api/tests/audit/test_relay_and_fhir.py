"""What the FHIR relay records for each request shape, and how events read as FHIR."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from carevault_api.audit.events import EVENTS
from carevault_api.audit.query import InvalidAuditQuery, parse_query, to_fhir
from carevault_api.audit.relay import classify
from carevault_api.models import AuditEvent, Base
from carevault_cli import audit as cli_audit

OBS = "3f2c1d7e-8a9b-4c5d-9e0f-123456789abc"
REPO = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("method", "path", "event", "writes", "rtype", "rid"),
    [
        ("GET", f"/fhir/Observation/{OBS}", "fhir.read", False, "Observation", OBS),
        ("GET", f"/fhir/Observation/{OBS}/_history/2", "fhir.vread", False, "Observation", OBS),
        ("GET", f"/fhir/Observation/{OBS}/_history", "fhir.history", False, "Observation", OBS),
        ("GET", "/fhir/Observation", "fhir.search", False, "Observation", None),
        ("POST", "/fhir/Observation", "fhir.create", True, "Observation", None),
        ("PUT", f"/fhir/Observation/{OBS}", "fhir.update", True, "Observation", OBS),
        ("DELETE", f"/fhir/Observation/{OBS}", "fhir.delete", True, "Observation", OBS),
        ("POST", "/fhir", "fhir.bundle", True, None, None),
        ("GET", f"/fhir/Patient/{OBS}/$everything", "fhir.export", False, "Patient", OBS),
        ("POST", f"/fhir/Patient/{OBS}/$rotate-key", "fhir.rotate-key", True, "Patient", OBS),
        ("POST", f"/fhir/Patient/{OBS}/$validate", "fhir.operation", True, "Patient", OBS),
        ("GET", "/fhir/Observation/$stats", "fhir.operation", False, "Observation", None),
        ("GET", "/fhir/Observation/a/b/c/d", "fhir.request", False, "Observation", None),
        ("PUT", "/fhir/Observation", "fhir.request", True, "Observation", None),
    ],
)
def test_each_request_shape_has_its_event(method: str, path: str, event: str, writes: bool, rtype: str | None, rid: str | None) -> None:
    found = classify(method, path, {})
    assert (found.event, found.writes, found.resource_type, found.resource_id) == (event, writes, rtype, rid)
    assert found.event in EVENTS and (not writes or found.event + ".attempt" in EVENTS)


def test_nothing_a_client_typed_is_kept_unless_it_is_a_known_shape() -> None:
    found = classify("GET", "/fhir/JeanDupont/marguerite.canary@example.org", {"family": "x", "Dupont Jean": "y", "_count": "1"})
    assert (found.resource_type, found.resource_id) == (None, None)
    assert found.details == {"method": "GET", "type": "unknown", "id": "not-a-server-id"}
    search = classify("GET", "/fhir/Patient", {"family": "Dupont", "birthdate": "1980", "Dupont Jean": "x", "phone:exact": "06"})
    assert search.details["params"] == ["birthdate", "family", "phone:exact"]  # names only, never values


def stored(**changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "seq": 7,
        "event_id": "6f1c0e0a-1111-4222-8333-444455556666",
        "recorded_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "tenant": "t1",
        "event": "fhir.read",
        "category": "health-data",
        "action": "R",
        "outcome": 200,
        "resource_type": "Observation",
        "resource_id": OBS,
        "patient": "ab" * 16,
        "principal": "dr-house",
        "client_id": "clinic-app",
        "request_id": "rid-1",
        "purpose": "TREAT",
        "legal_basis": None,
        "details": '{"method":"GET"}',
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }
    values.update(changes)
    return AuditEvent(**values)


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_every_event_reads_as_a_valid_r4_audit_event(name: str) -> None:
    spec = EVENTS[name]
    event = stored(event=name, category=spec.category, action=spec.action, outcome=None if name.endswith(".attempt") else 403)
    resource = to_fhir(event, "https://h/fhir", None)
    FhirAuditEvent.model_validate(resource)
    assert resource["subtype"][-1] == {"system": "https://carevault.dev/audit-event", "code": name, "display": spec.summary}


def test_a_patient_sees_their_own_reference_and_others_a_pseudonym() -> None:
    auditor = to_fhir(stored(), "https://h/fhir", None)
    patient = to_fhir(stored(), "https://h/fhir", OBS)
    assert auditor["entity"][0]["what"] == {"identifier": {"system": "https://carevault.dev/patient-pseudonym", "value": "ab" * 16}}
    assert patient["entity"][0]["what"] == {"reference": f"Patient/{OBS}"}
    assert patient["entity"][1]["what"] == {"reference": f"Observation/{OBS}"}
    assert patient["outcome"] == "0" and patient["agent"][0]["altId"] == "clinic-app"
    assert patient["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"


def test_search_parameters() -> None:
    query = parse_query(
        [
            ("patient", OBS),
            ("date", "ge2026-01-01"),
            ("date", "lt2026-02-01T00:00:00Z"),
            ("subtype", "fhir.read,fhir.export"),
            ("_count", "10"),
        ]
    )
    assert (query.patient_id, query.events, query.count) == (OBS, ["fhir.read", "fhir.export"], 10)
    assert [op for op, _ in query.recorded_bounds] == ["ge", "lt"]
    for bad in (
        [("name", "x")],
        [("subtype", "fhir.peek")],
        [("_count", "9999")],
        [("_count", "\u00b2")],
        [("_cursor", "9" * 30)],
        [("patient", "Dupont")],
        [("date", "yesterday")],
        [("date", "2026-02-30")],
        [("date", "9999-12-31")],
        [("date", "gt9999-12-31T23:59:59.999999Z")],
    ):
        with pytest.raises(InvalidAuditQuery):
            parse_query(bad)


def test_the_cli_reads_the_columns_api_writes() -> None:
    """`carevault audit verify` mirrors api's audit tables; both must agree."""
    for table in (cli_audit.AUDIT_EVENTS, cli_audit.AUDIT_CHAIN_HEAD, cli_audit.AUDIT_CHECKPOINTS, cli_audit.AUDIT_ANCHOR):
        model = Base.metadata.tables[table.name]
        for column in table.columns:
            assert column.name in model.columns, (table.name, column.name)
            assert type(column.type) is type(model.columns[column.name].type), (table.name, column.name)
    hashed = {f.name for f in dataclasses.fields(cli_audit.EventContent)} | {"seq", "prev_hash", "hash"}
    assert hashed == set(Base.metadata.tables["audit_events"].columns.keys())
    assert isinstance(Base.metadata.tables["audit_events"].c.seq.type, sa.BigInteger)


def test_docs_list_exactly_the_events_recorded() -> None:
    text = (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    section = text.split("\n## Events\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z][a-z.-]+)` \|", section, flags=re.M))
    assert documented == set(EVENTS), (sorted(set(EVENTS) - documented), sorted(documented - set(EVENTS)))
