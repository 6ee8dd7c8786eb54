"""FHIR requests to records, with their audit events (fail closed).

Reads: records answers, api stores ``fhir.<interaction>`` (outcome = records'
status), and only then relays the answer; if the event cannot be stored the client
gets 503 and nothing of the answer. Writes: ``fhir.<interaction>.attempt`` is
stored before records is asked (if it cannot be, nothing is asked), then the
outcome event as for reads. A request that ends without records' answer has its
outcome too: the problem's status (503 records unavailable, 413 too large, 499 the
client went away mid-body), so no write attempt is left without one. What is
kept: interaction, resource type and id, status, request id, principal, client,
tenant, purpose, and the patient as a pseudonym (records names the patients a
request reached for in ``x-carevault-patient``) - never content, never a search value.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from carevault_api.audit.fhir_types import R4_RESOURCE_TYPES
from carevault_api.audit.hints import SERVER_ID, patients_seen
from carevault_api.audit.service import Actor, AuditTrail, trail_of
from carevault_api.auth.principal import Principal
from carevault_common.errors import ProblemError
from carevault_common.proxy import RelayedBody

MAX_FHIR_BODY = 32 * 1024 * 1024
PURPOSE_HEADER = "x-purpose-of-use"
OPERATION = re.compile(r"^\$[a-z][a-z0-9-]{0,39}$")
SEARCH_PARAM = re.compile(r"^_?[a-z][a-z0-9-]{0,39}(?::[a-z][a-z-]{0,29})?$")
MAX_PARAMS = 20
# HL7 v3 PurposeOfUse (http://terminology.hl7.org/CodeSystem/v3-ActReason), the usual ones.
PURPOSES = frozenset(
    {
        "TREAT",
        "ETREAT",
        "CAREMGT",
        "HPAYMT",
        "HOPERAT",
        "HRESCH",
        "PUBHLTH",
        "HSYSADMIN",
        "PATRQT",
        "PATADMIN",
        "FAMRQT",
        "PWATRNY",
        "COVERAGE",
        "LEGAL",
        "BTG",
    }
)


@dataclass(frozen=True, slots=True)
class Interaction:
    event: str
    writes: bool
    resource_type: str | None = None
    resource_id: str | None = None
    details: dict[str, str | int | bool | list[str]] = field(default_factory=dict)


def classify(method: str, path: str, params: Mapping[str, str] | None = None) -> Interaction:
    """The audit event of a request under /fhir (``path`` starting at /fhir)."""
    segments = [s for s in path.removeprefix("/fhir").split("/") if s]
    writes = method != "GET"
    details: dict[str, str | int | bool | list[str]] = {"method": method}
    resource_type: str | None = None
    resource_id: str | None = None
    if segments:
        if segments[0] in R4_RESOURCE_TYPES:
            resource_type = segments[0]
        else:
            details["type"] = "unknown"
    if len(segments) >= 2 and not segments[1].startswith(("$", "_")):
        if SERVER_ID.match(segments[1]):
            resource_id = segments[1]
        else:
            details["id"] = "not-a-server-id"

    def make(event: str, is_write: bool = writes) -> Interaction:
        return Interaction(event, is_write, resource_type, resource_id, details)

    if not segments:
        return make("fhir.bundle" if method == "POST" else "fhir.request")
    if len(segments) == 1:
        if method == "GET":
            names = sorted({k for k in (params or {}) if SEARCH_PARAM.match(k)})[:MAX_PARAMS]
            if names:
                details["params"] = names
            return make("fhir.search")
        return make("fhir.create" if method == "POST" else "fhir.request")
    if len(segments) in (2, 3) and segments[-1].startswith("$"):
        operation = segments[-1]
        details["operation"] = operation if OPERATION.match(operation) else "unknown"
        if operation == "$everything" and method == "GET":
            return make("fhir.export")
        if operation == "$rotate-key" and method == "POST":
            return make("fhir.rotate-key")
        return make("fhir.operation")
    if len(segments) == 2 and segments[1] == "_search" and method == "POST":
        return make("fhir.search", False)
    if len(segments) == 2 and segments[1] == "_history" and method == "GET":
        return make("fhir.history")
    if len(segments) == 2:
        return make({"GET": "fhir.read", "PUT": "fhir.update", "DELETE": "fhir.delete"}.get(method, "fhir.request"))
    if len(segments) == 3 and segments[2] == "_history" and method == "GET":
        return make("fhir.history")
    if len(segments) == 4 and segments[2] == "_history" and method == "GET":
        if segments[3].isascii() and segments[3].isdigit() and len(segments[3]) <= 9:
            details["version"] = int(segments[3])
        return make("fhir.vread")
    return make("fhir.request")


def purpose_of(request: Request) -> str | None:
    value = request.headers.get(PURPOSE_HEADER, "").strip().upper()
    return value if value in PURPOSES else None


def _created_id(headers: Mapping[str, str]) -> str | None:
    location = next((v for k, v in headers.items() if k.lower() == "location"), "")
    parts = location.split("/")
    return parts[1] if len(parts) >= 2 and SERVER_ID.match(parts[1]) else None


async def _attempt(trail: AuditTrail, actor: Actor, interaction: Interaction) -> None:
    """A write is recorded as attempted before records is asked (fail closed)."""
    if interaction.writes:
        await trail.append(
            interaction.event + ".attempt",
            actor,
            outcome=None,
            resource_type=interaction.resource_type,
            resource_id=interaction.resource_id,
            details=interaction.details,
        )


async def _outcome(
    trail: AuditTrail, actor: Actor, interaction: Interaction, status: int, headers: Mapping[str, str], patients: set[str]
) -> None:
    details = dict(interaction.details)
    if len(patients) > 1:
        details["patients"] = len(patients)
    resource_id = interaction.resource_id
    if interaction.event == "fhir.create" and status == 201:
        resource_id = _created_id(headers)
    await trail.append(
        interaction.event,
        actor,
        outcome=status,
        resource_type=interaction.resource_type,
        resource_id=resource_id,
        patient_id=min(patients) if patients else None,
        details=details,
    )


async def audited(request: Request, principal: Principal, handle: Callable[[], Awaitable[Response]], path: str | None = None) -> Response:
    """A FHIR request, audited: ``.attempt`` before a write, the outcome before the
    answer leaves, failures included. ``handle`` forwards it to records
    (:mod:`carevault_api.fhir.router`) or is api's own (Binary content, Bundles carrying
    Binary). The patients come from every records answer the handling got
    (:mod:`carevault_api.audit.hints`)."""
    trail = trail_of(request)
    interaction = classify(request.method, path or request.url.path, request.query_params)
    actor = Actor.of(principal, purpose_of(request))
    await _attempt(trail, actor, interaction)
    seen: set[str] = set()
    token = patients_seen.set(seen)
    try:
        try:
            response = await handle()
        except ProblemError as refused:
            await _outcome(trail, actor, interaction, refused.status, {}, seen)
            raise
        try:
            await _outcome(trail, actor, interaction, response.status_code, response.headers, seen)
        except BaseException:
            if isinstance(response, StreamingResponse) and isinstance(response.body_iterator, RelayedBody | AsyncGenerator):
                await response.body_iterator.aclose()  # nothing of it leaves; its upstream is released
            raise
    finally:
        patients_seen.reset(token)
    return response
