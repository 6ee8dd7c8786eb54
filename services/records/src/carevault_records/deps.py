"""Dependencies of the records routes (Annotated aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import session_scope
from carevault_common.errors import Unauthorized
from carevault_crypto import InvalidKeyFormat, PatientKey
from carevault_records.errors import InvalidPatientKey
from carevault_records.keys.service import RequestKeyrings
from carevault_records.resources.service import ResourceService


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as established by api (the only service allowed to call records)."""

    tenant: str
    principal: str
    base_url: str
    # The patients api authorized this request for; None: any patient of the tenant.
    patient_scope: frozenset[str] | None = frozenset()


READ_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # A read runs its statements in autocommit: no BEGIN/COMMIT round trips. Under
    # READ COMMITTED each statement sees its own snapshot inside a transaction too,
    # so this changes no result; a read's only write (re-escrow to a new doctor
    # key, one statement) commits by itself.
    # A write decides on what it read (If-Match, conditional create, idempotency):
    # write_sessions keeps that true until it commits, on SQLite too.
    factory = request.app.state.read_sessions if request.method in READ_METHODS else request.app.state.write_sessions
    async with session_scope(factory) as session:
        yield session


# Dependencies read the headers from the request themselves: declared Header()
# parameters cost a validation pass each on every request (measured on the hot path).
async def get_caller(request: Request) -> Caller:
    headers = request.headers
    tenant, principal = headers.get("x-carevault-tenant"), headers.get("x-carevault-principal")
    if not tenant or not principal:
        raise Unauthorized("The caller's tenant and principal are missing.")
    # Fail closed: no scope header means no patient data.
    raw = headers.get("x-carevault-patient-scope", "").strip()
    scope = None if raw == "*" else frozenset(p for p in raw.split(",") if p)
    return Caller(tenant, principal, (headers.get("x-carevault-base-url") or "/fhir").rstrip("/"), scope)


async def get_patient_key(request: Request) -> PatientKey | None:
    header = request.headers.get("x-patient-key")
    if header is None:
        return None
    try:
        return PatientKey.from_header(header)
    except InvalidKeyFormat:
        raise InvalidPatientKey() from None


async def get_resources(request: Request) -> ResourceService:
    service: ResourceService = request.app.state.resources
    return service


# scope="function": commit before the response leaves, so a 2xx means the write is durable
# (the default scope would commit after the response is sent).
async def get_keyrings(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    caller: Annotated[Caller, Depends(get_caller)],
    key: Annotated[PatientKey | None, Depends(get_patient_key)],
) -> RequestKeyrings:
    resources: ResourceService = request.app.state.resources
    keyrings = resources.keyrings(session, caller.tenant, key, caller.patient_scope)
    request.state.keyrings = keyrings  # read by PatientHeaderMiddleware
    return keyrings


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
CallerDep = Annotated[Caller, Depends(get_caller)]
PatientKeyDep = Annotated[PatientKey | None, Depends(get_patient_key)]
ResourcesDep = Annotated[ResourceService, Depends(get_resources)]
KeyringsDep = Annotated[RequestKeyrings, Depends(get_keyrings)]
