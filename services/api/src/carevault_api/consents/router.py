"""FHIR ``Consent`` at ``/fhir/Consent``: served by api (which must read consents
to enforce them, without any patient key), routed before the FHIR catch-all
that forwards everything else to records."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from carevault_api import audit
from carevault_api.auth.principal import Principal
from carevault_api.auth.scopes import scopes_allow
from carevault_api.authorization.compartment import patient_from_param
from carevault_api.authorization.fhir import AccessDenied, token_contexts
from carevault_api.consents import service
from carevault_api.deps import PrincipalDep, SessionDep
from carevault_api.fhir.service import require_fhir_json
from carevault_common.errors import FHIR_MEDIA_TYPE, ProblemError

router = APIRouter(prefix="/fhir/Consent", dependencies=[Depends(require_fhir_json)])


def _fhir(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_MEDIA_TYPE)


def _scoped(principal: Principal, interaction: str) -> None:
    """SMART scopes narrow consents too (``patient/Consent.rs``, ``user/*.cruds``, ...)."""
    if not principal.development and not scopes_allow(principal.scopes, token_contexts(principal), "Consent", interaction):
        raise AccessDenied("The access token's scopes do not allow this on Consent.")


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise ProblemError("The body is not valid JSON.", code="invalid-json") from None


async def _record(request: Request, session: AsyncSession, principal: Principal, event: str, outcome: int, consent: dict[str, Any]) -> None:
    """The audit event of a consent granted or withdrawn, stored before the answer (and
    before the session commits: if it cannot be stored, the change is rolled back)."""
    provision = consent["provision"]
    grantee = provision["actor"][0]["reference"]["identifier"]
    await audit.record(
        request,
        event,
        session=session,
        outcome=outcome,
        principal=principal,
        resource_type="Consent",
        resource_id=consent["id"],
        patient_id=consent["patient"]["reference"].removeprefix("Patient/"),
        legal_basis=consent["policyRule"]["coding"][0]["code"],
        details={
            "grantee_kind": "user" if grantee["system"].endswith("/user") else "client",
            "grantee": grantee["value"],
            "purpose": provision["purpose"][0]["code"],
            "resource_types": [c["code"] for c in provision.get("class", [])] or ["*"],
        },
    )


@router.post("")
async def grant(request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    _scoped(principal, "c")
    consent = await service.grant(session, principal, await _json(request))
    await _record(request, session, principal, "admin.consent.grant", 201, consent)
    response = _fhir(consent, 201)
    response.headers["location"] = f"Consent/{consent['id']}/_history/{consent['meta']['versionId']}"
    return response


@router.get("")
async def search(request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    _scoped(principal, "s")
    raw = request.query_params.get("patient")
    patient_id = patient_from_param(raw) if raw else None
    entries = await service.search(session, principal, patient_id)
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": [{"fullUrl": f"Consent/{e['id']}", "resource": e, "search": {"mode": "match"}} for e in entries],
    }
    return _fhir(bundle)


@router.get("/{consent_id}")
async def read(consent_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    _scoped(principal, "r")
    return _fhir(await service.read(session, principal, consent_id))


@router.get("/{consent_id}/_history/{version_id}")
async def vread(consent_id: str, version_id: str, principal: PrincipalDep, session: SessionDep) -> Response:
    """The Location a create answers with points here (``Consent/{id}/_history/{vid}``)."""
    _scoped(principal, "r")
    return _fhir(await service.vread(session, principal, consent_id, version_id))


@router.put("/{consent_id}")
async def update(consent_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    _scoped(principal, "u")
    consent = await service.update(session, principal, consent_id, await _json(request))
    await _record(request, session, principal, "admin.consent.revoke", 200, consent)
    return _fhir(consent)


@router.delete("/{consent_id}")
async def revoke(consent_id: str, request: Request, principal: PrincipalDep, session: SessionDep) -> Response:
    _scoped(principal, "d")
    consent = await service.revoke(session, principal, consent_id)
    await _record(request, session, principal, "admin.consent.revoke", 204, consent)
    return Response(status_code=204)
