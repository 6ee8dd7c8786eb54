"""``GET /fhir/AuditEvent`` and ``GET /fhir/AuditEvent/{id}``: served by api itself,
declared before the /fhir catch-all that forwards to records.

Two views of one tenant's trail. An auditor (:func:`can_read_audit`) searches every
event. A patient, sending their key with ``patient=<id>``, sees who reached for
their records, when, why and with what outcome: api asks records to check the key
for that patient before anything is shown. Every query is itself audited
(``audit.query``), before the answer leaves.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from carevault_api.audit import repository
from carevault_api.audit.permissions import can_read_audit
from carevault_api.audit.query import PATIENT_VIEW_PARAMS, InvalidAuditQuery, parse_query, search_bundle, to_fhir
from carevault_api.audit.relay import purpose_of
from carevault_api.audit.service import Actor, trail_of
from carevault_api.deps import PrincipalDep
from carevault_api.fhir.service import public_base_url, require_fhir_json
from carevault_common.db import session_scope
from carevault_common.errors import FHIR_MEDIA_TYPE, Forbidden, NotFound, ProblemError

router = APIRouter(prefix="/fhir", dependencies=[Depends(require_fhir_json)])


def _fhir(body: dict[str, object]) -> Response:
    return Response(orjson.dumps(body), media_type=FHIR_MEDIA_TYPE)


@router.get("/AuditEvent")
async def search_audit_events(request: Request, principal: PrincipalDep) -> Response:
    trail = trail_of(request)
    actor = Actor.of(principal, purpose_of(request))
    params = list(request.query_params.multi_items())
    query = parse_query(params)
    patient_key = request.headers.get("x-patient-key")
    if patient_key is not None:
        if query.patient_id is None or not query.names <= PATIENT_VIEW_PARAMS:
            raise InvalidAuditQuery("With X-Patient-Key, search by patient (and date, _count) only: the patient's own view.")
        view = "patient"
        try:
            await request.app.state.records.verify_patient_key(
                tenant=principal.tenant, principal=principal.subject, patient_id=query.patient_id, patient_key=patient_key
            )
        except ProblemError as refused:
            await trail.append("audit.query", actor, outcome=refused.status, patient_id=query.patient_id, details={"view": view})
            raise
    else:
        view = "auditor"
        if not can_read_audit(principal, principal.tenant):
            await trail.append("audit.query", actor, outcome=403, details={"view": view})
            raise Forbidden("Reading the audit trail needs the auditor role, or the patient's key for their own view.")
    where = repository.EventFilter(
        tenant=principal.tenant,
        patient=trail.pseudonym(principal.tenant, query.patient_id) if query.patient_id else None,
        resource_type=query.resource_type,
        resource_id=query.resource_id,
        principal=query.agent,
        events=query.events,
        recorded_bounds=query.recorded_bounds,
        outcome_range=query.outcome_range,
        before_seq=query.before_seq,
    )
    async with session_scope(trail.sessions) as session:
        events = await repository.find_events(session, where, query.count + 1)
    shown = min(len(events), query.count)
    await trail.append("audit.query", actor, outcome=200, patient_id=query.patient_id, details={"view": view, "results": shown})
    return _fhir(search_bundle(events, query, params, public_base_url(request), query.patient_id))


@router.get("/AuditEvent/{event_id}")
async def read_audit_event(event_id: str, request: Request, principal: PrincipalDep) -> Response:
    trail = trail_of(request)
    actor = Actor.of(principal, purpose_of(request))
    if not can_read_audit(principal, principal.tenant):
        await trail.append("audit.query", actor, outcome=403, details={"view": "auditor"})
        raise Forbidden("Reading the audit trail needs the auditor role.")
    async with session_scope(trail.sessions) as session:
        event = await repository.get_event(session, principal.tenant, event_id)
    await trail.append("audit.query", actor, outcome=200 if event else 404, details={"view": "auditor", "results": int(event is not None)})
    if event is None:
        raise NotFound("No such AuditEvent in this tenant.")
    return _fhir(to_fhir(event, public_base_url(request), None))
