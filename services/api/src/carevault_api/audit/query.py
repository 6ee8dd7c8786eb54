"""``/fhir/AuditEvent``: search parameters in, FHIR R4 AuditEvent resources out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from carevault_api.audit.events import CAREVAULT_EVENT, EVENTS, spec
from carevault_api.audit.hints import SERVER_ID
from carevault_api.models import AuditEvent
from carevault_common.auditchain import format_time
from carevault_common.errors import ProblemError

DEFAULT_COUNT = 50
MAX_COUNT = 500
CURSOR = "_cursor"
PSEUDONYM_SYSTEM = "https://carevault.dev/patient-pseudonym"
PRINCIPAL_SYSTEM = "https://carevault.dev/principal"
CLIENT_SYSTEM = "https://carevault.dev/client"
EXTENSION_BASE = "https://carevault.dev/fhir/StructureDefinition/"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# AuditEvent.outcome (R4): 0 success, 4 minor failure (the client's), 8 serious failure (ours).
OUTCOME_RANGES = {"0": (0, 399), "4": (400, 499), "8": (500, 599)}
# What a patient may filter on in their own view.
PATIENT_VIEW_PARAMS = frozenset({"patient", "date", "_count", CURSOR})
_DATE = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?)$")


class InvalidAuditQuery(ProblemError):
    status, code, title = 400, "invalid-search", "Invalid AuditEvent search"


@dataclass
class AuditQuery:
    patient_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    agent: str | None = None
    events: list[str] = field(default_factory=list)
    recorded_bounds: list[tuple[str, datetime]] = field(default_factory=list)
    outcome_range: tuple[int, int] | None = None
    count: int = DEFAULT_COUNT
    before_seq: int | None = None
    names: set[str] = field(default_factory=set)


def _date_bounds(value: str) -> list[tuple[str, datetime]]:
    match = _DATE.match(value)
    if not match:
        raise InvalidAuditQuery("date must be a FHIR date or dateTime with an optional prefix (ge, gt, le, lt, eq).")
    prefix, text = match.group(1) or "eq", match.group(2)
    day_only = len(text) == 10
    try:
        start = datetime.fromisoformat(text + "T00:00:00+00:00" if day_only else text.replace("Z", "+00:00"))
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        end = start + (timedelta(days=1) if day_only else timedelta(microseconds=1))
    except (ValueError, OverflowError):  # no such date, or past the calendar's ends
        raise InvalidAuditQuery("date is not a valid date or dateTime (years 1 to 9999).") from None
    return {
        "eq": [("ge", start), ("lt", end)],
        "ge": [("ge", start)],
        "gt": [("ge", end)],
        "lt": [("lt", start)],
        "le": [("lt", end)],
    }[prefix]


def parse_query(params: Sequence[tuple[str, str]]) -> AuditQuery:
    query = AuditQuery()
    for name, value in params:
        query.names.add(name)
        if name == "patient":
            value = value.removeprefix("Patient/")
            if not SERVER_ID.match(value):
                raise InvalidAuditQuery("patient must be a patient id.")
            query.patient_id = value
        elif name == "entity":
            kind, _, rid = value.partition("/")
            if not kind or not SERVER_ID.match(rid):
                raise InvalidAuditQuery("entity must be [type]/[id].")
            if kind == "Patient":
                query.patient_id = rid
            else:
                query.resource_type, query.resource_id = kind, rid
        elif name == "agent":
            query.agent = value.removeprefix(PRINCIPAL_SYSTEM + "|")
        elif name == "subtype":
            for token in value.split(","):
                code = token.removeprefix(CAREVAULT_EVENT + "|")
                if code not in EVENTS:
                    raise InvalidAuditQuery(f"subtype: unknown event {code[:64]!r}; see docs/audit.md.")
                query.events.append(code)
        elif name == "date":
            query.recorded_bounds += _date_bounds(value)
        elif name == "outcome":
            if value not in OUTCOME_RANGES:
                raise InvalidAuditQuery("outcome is one of 0, 4, 8.")
            query.outcome_range = OUTCOME_RANGES[value]
        elif name == "_count":
            if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_COUNT:
                raise InvalidAuditQuery(f"_count is 1 to {MAX_COUNT}.")
            query.count = int(value)
        elif name == CURSOR:
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise InvalidAuditQuery("The page cursor is not valid.")
            query.before_seq = int(value)
        else:
            raise InvalidAuditQuery(f"Unsupported AuditEvent search parameter {name[:40]!r}.")
    return query


def _outcome_code(status: int | None) -> str | None:
    if status is None:
        return None
    return next((code for code, (low, high) in OUTCOME_RANGES.items() if low <= status <= high), "8")


def to_fhir(event: AuditEvent, base: str, patient_id: str | None) -> dict[str, Any]:
    """One stored event as a FHIR R4 AuditEvent. ``patient_id`` is given when the
    reader already knows it (they searched by it): it replaces the pseudonym."""
    definition = spec(event.event)
    subtypes = [{"system": CAREVAULT_EVENT, "code": event.event, "display": definition.summary}]
    if definition.subtype is not None:
        subtypes.insert(0, {"system": definition.subtype.system, "code": definition.subtype.code, "display": definition.subtype.display})
    agent: dict[str, Any] = {"requestor": True, "who": {"identifier": {"system": PRINCIPAL_SYSTEM, "value": event.principal or "unknown"}}}
    if event.client_id:
        agent["altId"] = event.client_id
    if event.purpose:
        agent["purposeOfUse"] = [{"coding": [{"system": PURPOSE_SYSTEM, "code": event.purpose}]}]
    recorded = format_time(event.recorded_at)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event.event_id,
        "meta": {"versionId": "1", "lastUpdated": recorded},
        "type": {"system": definition.type.system, "code": definition.type.code, "display": definition.type.display},
        "subtype": subtypes,
        "action": event.action,
        "recorded": recorded,
        "agent": [agent],
        "source": {
            "site": event.tenant,
            "observer": {"display": "carevault api"},
            "type": [
                {"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}
            ],
        },
        "extension": [
            {"url": EXTENSION_BASE + "audit-sequence", "valueInteger": event.seq},
            {"url": EXTENSION_BASE + "audit-hash", "valueString": event.hash},
        ],
    }
    outcome = _outcome_code(event.outcome)
    if outcome is not None:
        resource["outcome"] = outcome
        resource["outcomeDesc"] = f"HTTP {event.outcome}"
    if event.purpose:
        resource["purposeOfEvent"] = [{"coding": [{"system": PURPOSE_SYSTEM, "code": event.purpose}]}]
    if event.request_id:
        resource["extension"].append({"url": EXTENSION_BASE + "request-id", "valueString": event.request_id})
    if event.legal_basis:
        resource["extension"].append({"url": EXTENSION_BASE + "legal-basis", "valueString": event.legal_basis})
    entities: list[dict[str, Any]] = []
    if event.patient:
        what: dict[str, Any] = (
            {"reference": f"Patient/{patient_id}"} if patient_id else {"identifier": {"system": PSEUDONYM_SYSTEM, "value": event.patient}}
        )
        entities.append(
            {
                "what": what,
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
            }
        )
    if event.resource_type and event.resource_id:
        entities.append(
            {
                "what": {"reference": f"{event.resource_type}/{event.resource_id}"},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            }
        )
    elif event.resource_type and not (event.resource_type == "Patient" and event.patient):
        entities.append(
            {
                "what": {"display": event.resource_type},
                "type": {"system": "http://hl7.org/fhir/resource-types", "code": event.resource_type},
            }
        )
    details = orjson.loads(event.details)
    if details:
        detail = [
            {"type": key, "valueString": ",".join(map(str, v)) if isinstance(v, list) else str(v)} for key, v in sorted(details.items())
        ]
        if entities:
            entities[-1]["detail"] = detail
        else:
            entities.append({"what": {"display": event.event}, "detail": detail})
    if entities:
        resource["entity"] = entities
    return resource


def search_bundle(
    events: list[AuditEvent], query: AuditQuery, params: Sequence[tuple[str, str]], base: str, patient_id: str | None
) -> dict[str, Any]:
    entries = [
        {"fullUrl": f"{base}/AuditEvent/{e.event_id}", "resource": to_fhir(e, base, patient_id), "search": {"mode": "match"}}
        for e in events[: query.count]
    ]
    kept = [(k, v) for k, v in params if k != CURSOR]
    links = [{"relation": "self", "url": f"{base}/AuditEvent?{urlencode(kept)}"}]
    if len(events) > query.count:
        links.append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode([*kept, (CURSOR, str(events[query.count - 1].seq))])}"})
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}
