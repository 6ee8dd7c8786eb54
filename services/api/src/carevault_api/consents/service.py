"""Consents: a patient (or their representative) grants a practitioner or a
clinic client access to their records, and can revoke it.

A consent names one patient, one grantee, resource types, read and/or write, a
purpose, a GDPR legal basis and an optional expiry. It is checked on every
read and write of that patient's records (:mod:`carevault_api.authorization.fhir`),
on top of the patient key, and is the only way across tenants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.accounts import repository as accounts
from carevault_api.auth.principal import Kind, Principal, Role
from carevault_api.authorization.matrix import Permission, Reach
from carevault_api.authorization.service import check
from carevault_api.consents import repository
from carevault_api.consents.fhir import parse_consent, render
from carevault_api.models_identity import ConsentRecord
from carevault_api.oauth import repository as clients
from carevault_common.errors import Forbidden, NotFound, UnprocessableEntity


@dataclass(frozen=True, slots=True)
class PatientLink:
    tenant: str
    relation: str


async def own_patient(session: AsyncSession, principal: Principal, patient_id: str) -> PatientLink | None:
    """The link by which a patient-role user acts for ``patient_id`` (self or representative)."""
    if principal.kind != Kind.USER or Role.PATIENT not in principal.roles:
        return None
    for link in await accounts.patients_of(session, principal.subject):
        if link.patient_id == patient_id:
            return PatientLink(link.tenant, link.relation)
    return None


async def consented_tenant(session: AsyncSession, principal: Principal, patient_id: str, resource_type: str, action: str) -> str | None:
    """The tenant holding ``patient_id`` if an active, unexpired consent lets the
    caller do ``action`` (read/write) on ``resource_type``; the caller's own tenant first."""
    found = []
    for consent in await repository.active_for(session, principal.subject, patient_id, datetime.now(UTC)):
        types = consent.resource_types.split()
        if ("*" in types or resource_type in types) and action in consent.actions.split():
            found.append(consent.tenant)
    if not found:
        return None
    return principal.tenant if principal.tenant in found else sorted(found)[0]


async def consented_read_types(session: AsyncSession, principal: Principal, patient_id: str) -> dict[str, frozenset[str]]:
    """Per tenant, the resource types of ``patient_id`` that the caller's active,
    unexpired consents let it read (``*``: every type)."""
    types: dict[str, set[str]] = {}
    for consent in await repository.active_for(session, principal.subject, patient_id, datetime.now(UTC)):
        if "read" in consent.actions.split():
            types.setdefault(consent.tenant, set()).update(consent.resource_types.split())
    return {tenant: frozenset(found) for tenant, found in types.items()}


async def grant(session: AsyncSession, principal: Principal, body: Any) -> dict[str, Any]:
    check(principal, Permission.CONSENT_GRANT)
    parsed = parse_consent(body)
    if parsed.status != "active":
        raise UnprocessableEntity("A new consent is active; revoke one with DELETE or by PUT with status inactive.")
    link = await own_patient(session, principal, parsed.patient_id)
    if link is None:
        raise Forbidden("Only the patient, or a representative, grants consent to their records.")
    if parsed.grantee_kind == "user":
        user = await accounts.get_user(session, parsed.grantee_id)
        grantee_tenant = user.tenant if user is not None and not user.disabled else None
    else:
        client = await clients.get_client(session, parsed.grantee_id)
        grantee_tenant = client.tenant if client is not None and not client.disabled else None
    if grantee_tenant is None:
        raise UnprocessableEntity("The grantee is not a known user or client.")
    now = datetime.now(UTC)
    record = ConsentRecord(
        id=str(uuid.uuid4()),
        tenant=link.tenant,
        patient_id=parsed.patient_id,
        grantee_kind=parsed.grantee_kind,
        grantee_id=parsed.grantee_id,
        grantee_tenant=grantee_tenant,
        resource_types=parsed.resource_types,
        actions=parsed.actions,
        purpose=parsed.purpose,
        legal_basis=parsed.legal_basis,
        expires_at=parsed.expires_at,
        status="active",
        granted_by=principal.subject,
        version=1,
        created_at=now,
        updated_at=now,
    )
    await repository.add(session, record)
    return render(record, now)


async def _visible(session: AsyncSession, principal: Principal, record: ConsentRecord) -> bool:
    if principal.development:
        return record.tenant == principal.tenant
    if await own_patient(session, principal, record.patient_id) is not None:
        return True
    if principal.subject == record.grantee_id:
        return True
    grant_ = check(principal, Permission.CONSENT_READ)
    return grant_.reach == Reach.PLATFORM or (grant_.reach == Reach.TENANT and principal.tenant in (record.tenant, record.grantee_tenant))


async def read(session: AsyncSession, principal: Principal, consent_id: str) -> dict[str, Any]:
    record = await repository.get(session, consent_id)
    if record is None or not await _visible(session, principal, record):
        raise NotFound("No such Consent.")
    return render(record, datetime.now(UTC))


async def vread(session: AsyncSession, principal: Principal, consent_id: str, version_id: str) -> dict[str, Any]:
    """A version of a consent: only the current one is kept (a revocation replaces it),
    so an older version is not found, said plainly."""
    consent = await read(session, principal, consent_id)
    current = consent["meta"]["versionId"]
    if version_id != current:
        raise NotFound(f"Only the current version of a Consent is kept: Consent/{consent_id}/_history/{current}.")
    return consent


async def search(session: AsyncSession, principal: Principal, patient_id: str | None) -> list[dict[str, Any]]:
    if await own_patient(session, principal, patient_id or "") is not None:
        records = await repository.search(session, tenant=None, patient_id=patient_id, grantee_id=None)
    else:
        grant_ = check(principal, Permission.CONSENT_READ)
        if grant_.reach == Reach.PLATFORM:
            records = await repository.search(session, tenant=None, patient_id=patient_id, grantee_id=None)
        elif grant_.reach == Reach.TENANT:
            records = await repository.search(session, tenant=principal.tenant, patient_id=patient_id, grantee_id=None)
        else:  # the consents naming the caller
            records = await repository.search(session, tenant=None, patient_id=patient_id, grantee_id=principal.subject)
    now = datetime.now(UTC)
    return [render(r, now) for r in records]


async def revoke(session: AsyncSession, principal: Principal, consent_id: str) -> dict[str, Any]:
    record = await repository.get(session, consent_id)
    if record is None:
        raise NotFound("No such Consent.")
    if await own_patient(session, principal, record.patient_id) is None:
        manage = check(principal, Permission.CONSENT_MANAGE)
        if not manage.covers_tenant(record.tenant):
            raise NotFound("No such Consent.")
    now = datetime.now(UTC)
    await repository.set_status(session, consent_id, "inactive", now)
    await session.refresh(record)
    return render(record, now)


async def update(session: AsyncSession, principal: Principal, consent_id: str, body: Any) -> dict[str, Any]:
    """Only a revocation is an update (status inactive); anything else is a new consent."""
    parsed = parse_consent(body)
    if parsed.status != "inactive":
        raise UnprocessableEntity("A consent changes only by revocation (status inactive); grant a new one for anything else.")
    return await revoke(session, principal, consent_id)
