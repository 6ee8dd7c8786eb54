"""Who may touch which patient's records: the decision api makes before (and,
for reads by id, after) forwarding a FHIR request to records.

How api learns the patient of a request (docs/security-access.md):

1. Before forwarding, from the request itself: the body of a create or update
   (records' own owner rule, :func:`patient_of`), the id of a ``Patient/{id}``
   URL, the ``patient``/``subject`` search parameter (or ``_id`` of a Patient
   search), the optional ``X-Patient-Id`` header, and every entry of a Bundle.
   That patient is authorized (self link or consent, plus token scopes) and sent
   to records as ``x-carevault-patient-scope``; records refuses to open any
   other patient's keyring in that request (403, before decrypting or writing).
2. A read by id of a non-Patient type without any of those hints is forwarded
   with an unrestricted scope in the caller's own tenant; records names the
   patient whose keyring it opened in the ``x-carevault-patient`` response
   header, and api authorizes that patient before relaying anything. No header
   on a success is a refusal (fail closed).
3. A delete by id without a hint first reads the resource the same way to
   learn its patient, then deletes with the scope restricted to that patient.
4. A search of patient data without a patient is refused (except with the
   development token): a search covers one patient at a time.

A hosting doctor's break-glass token (:mod:`carevault_api.break_glass`) reads,
searches and exports the records of its one patient, in that patient's tenant,
and nothing else: any other patient, any write, directory data, Bundles are
refused; a read by id naming no patient is restricted to that patient in
records. Before each request keyservice confirms that the case still gives
access (approved, fresh, not closed): closing the case stops the token at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.auth.principal import Kind, Principal, Role
from carevault_api.auth.scopes import scopes_allow
from carevault_api.authorization.compartment import (
    DIRECTORY_TYPES,
    OWNER_ELEMENT,
    PATIENT_PARAMS,
    is_patient_data,
    patient_from_param,
    patient_of,
)
from carevault_api.authorization.matrix import Permission, Reach, reaches
from carevault_api.consents.service import consented_read_types, consented_tenant, own_patient
from carevault_common.db import session_scope
from carevault_common.errors import Forbidden

ANY_PATIENT = "*"
#: Every type of a patient's records (what $everything exports).
PATIENT_DATA_TYPES: frozenset[str] = frozenset(OWNER_ELEMENT)
_INTERACTION = {"POST": "c", "PUT": "u", "DELETE": "d"}


class AccessDenied(Forbidden):
    code, title = "access-denied", "Access denied"


@dataclass(frozen=True, slots=True)
class Touch:
    """One resource interaction of a request."""

    resource_type: str
    interaction: str  # one of c r u d s
    patient_id: str | None
    new_patient: bool = False
    #: Patient/[id]/$everything: a read of every type of that patient's records.
    everything: bool = False

    @property
    def action(self) -> str:
        return "read" if self.interaction in "rs" else "write"


@dataclass
class Access:
    """What api tells records, and what it checks on the way back."""

    tenant: str
    patient_scope: str  # "*" or comma-separated patient ids ("" = no patient data)
    post_check: Touch | None = None  # a read whose patient records reports
    preflight_delete: Touch | None = None
    link_new_patient: bool = False
    patients: set[str] = field(default_factory=set)
    #: $everything only: the resource types the caller may read (None: all of them).
    resource_types: frozenset[str] | None = None


def token_contexts(principal: Principal) -> tuple[str, ...]:
    """The SMART scope context a principal's scopes are read in."""
    if principal.kind == Kind.CLIENT:
        return ("system",)
    return ("patient",) if Role.PATIENT in principal.roles else ("user",)


def parse_path(path: str) -> tuple[str, str | None, bool]:
    """(type, id, is history/vread) of a FHIR path below /fhir/."""
    parts = [p for p in path.strip("/").split("/") if p]
    resource_type = parts[0] if parts else ""
    resource_id = parts[1] if len(parts) > 1 else None
    return resource_type, resource_id, len(parts) > 2


def touch_of(method: str, path: str, query: list[tuple[str, str]], body: Any, hint: str | None) -> Touch:
    resource_type, resource_id, _ = parse_path(path)
    parts = [p for p in path.strip("/").split("/") if p]
    if method == "GET" and len(parts) == 3 and resource_type == "Patient" and parts[2] == "$everything" and resource_id:
        # The patient's whole record (GDPR Art. 15/20): a read of each type of it.
        return Touch("Patient", "r", resource_id, everything=True)
    interaction = ("r" if resource_id else "s") if method == "GET" else _INTERACTION.get(method, "r")
    if not is_patient_data(resource_type):
        return Touch(resource_type, interaction, None)
    patient: str | None = None
    new_patient = False
    if resource_type == "Patient":
        if method == "POST" and resource_id is None:
            new_patient = True
        elif resource_id is not None:
            patient = resource_id
        else:
            ids = [patient_from_param(v) for k, v in query if k == "_id"]
            patient = ids[0] if len(ids) == 1 else None
    elif method in ("POST", "PUT") and isinstance(body, dict):
        patient = patient_of(body)
    elif method == "GET" and resource_id is None:
        found = {patient_from_param(v) for k, v in query if k.partition(":")[0] in PATIENT_PARAMS}
        patient = found.pop() if len(found) == 1 else None
    if patient is None and hint:
        patient = patient_from_param(hint)
    return Touch(resource_type, interaction, patient, new_patient)


def bundle_touches(body: Any) -> list[Touch]:
    """The touches of a transaction or batch Bundle (unknown patient: None)."""
    touches: list[Touch] = []
    entries = body.get("entry", []) if isinstance(body, dict) else []
    new_patients = {
        e.get("fullUrl")
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Patient"
    }
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        raw_request = entry.get("request")
        request: dict[str, Any] = raw_request if isinstance(raw_request, dict) else {}
        method = str(request.get("method", "")).upper()
        url = str(request.get("url", ""))
        path, _, query_text = url.partition("?")
        query = [tuple(p.split("=", 1)) for p in query_text.split("&") if "=" in p]
        resource = entry.get("resource")
        touch = touch_of(method, path, query, resource, None)  # type: ignore[arg-type]
        if touch.patient_id is None and isinstance(resource, dict) and touch.resource_type != "Patient":
            owner = _owner_reference(resource)
            if owner in new_patients:
                touch = Touch(touch.resource_type, touch.interaction, None, new_patient=True)
        touches.append(touch)
    return touches


def _owner_reference(resource: Mapping[str, Any]) -> str | None:
    from carevault_api.authorization.compartment import OWNER_ELEMENT

    value = resource.get(OWNER_ELEMENT.get(str(resource.get("resourceType")), ""))
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) else None


#: Confirms that a break-glass principal's case still gives access; raises a ProblemError if not.
CaseCheck = Callable[[Principal], Awaitable[None]]


class FhirAuthorizer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        # Set by the break-glass domain at start (main.py); without it every
        # break-glass token is refused (fail closed).
        self.break_glass_case: CaseCheck | None = None

    async def _break_glass(self, principal: Principal, touch: Touch, bundle_entry: bool) -> Access:
        patient = principal.patient
        if patient is None or bundle_entry or touch.action != "read" or not is_patient_data(touch.resource_type):
            raise AccessDenied("A break-glass token reads the records of its one patient, nothing else.")
        if touch.patient_id is not None and touch.patient_id != patient:
            raise AccessDenied("This break-glass token is for another patient.")
        if touch.patient_id is None and touch.interaction != "r":
            raise AccessDenied("Name the patient of this search.")
        if self.break_glass_case is None:
            raise AccessDenied("Break-glass access is not available.")
        await self.break_glass_case(principal)
        # A read by id naming no patient too: records opens no other patient's keyring.
        return Access(principal.tenant, patient, patients={patient})

    def _scope_check(self, principal: Principal, touch: Touch) -> None:
        if not scopes_allow(principal.scopes, token_contexts(principal), touch.resource_type, touch.interaction):
            raise AccessDenied(f"The access token's scopes do not allow this on {touch.resource_type}.")

    async def _own_tenant(self, principal: Principal, patient_id: str) -> str | None:
        """The tenant of ``patient_id`` when the caller is that patient (or represents them)."""
        if principal.patient == patient_id:
            return principal.tenant
        async with session_scope(self.sessions) as session:
            link = await own_patient(session, principal, patient_id)
        return link.tenant if link is not None else None

    async def patient_tenant(self, principal: Principal, patient_id: str, resource_type: str, action: str) -> str:
        """The tenant whose records hold ``patient_id``, if the caller may ``action`` them."""
        if principal.development:
            return principal.tenant
        permission = Permission.PATIENT_DATA_READ if action == "read" else Permission.PATIENT_DATA_WRITE
        allowed = reaches(principal.roles, permission)
        if Reach.SELF in allowed:
            own = await self._own_tenant(principal, patient_id)
            if own is not None:
                return own
        if Reach.CONSENT in allowed:
            async with session_scope(self.sessions) as session:
                tenant = await consented_tenant(session, principal, patient_id, resource_type, action)
            if tenant is not None:
                return tenant
        raise AccessDenied("No consent or link gives you access to this patient's records.")

    async def _everything(self, principal: Principal, patient_id: str) -> Access:
        """``Patient/[id]/$everything``: the types of that patient's records the caller
        may read (token scopes, and the consent for a grantee), sent to records,
        which exports those types only. Refused when that leaves none."""
        if principal.development:
            return Access(principal.tenant, patient_id, patients={patient_id})
        readable = frozenset(t for t in PATIENT_DATA_TYPES if scopes_allow(principal.scopes, token_contexts(principal), t, "r"))
        if not readable:
            raise AccessDenied("The access token's scopes allow reading none of a patient's records.")
        tenant: str | None = None
        allowed = reaches(principal.roles, Permission.PATIENT_DATA_READ)
        if Reach.SELF in allowed:
            tenant = await self._own_tenant(principal, patient_id)
        if tenant is None and Reach.CONSENT in allowed:
            async with session_scope(self.sessions) as session:
                by_tenant = await consented_read_types(session, principal, patient_id)
            if by_tenant:
                tenant = principal.tenant if principal.tenant in by_tenant else sorted(by_tenant)[0]
                consented = by_tenant[tenant]
                readable &= PATIENT_DATA_TYPES if "*" in consented else consented
        if tenant is None:
            raise AccessDenied("No consent or link gives you access to this patient's records.")
        if not readable:
            raise AccessDenied("Your consent and scopes cover none of the types of this patient's records.")
        types = None if readable == PATIENT_DATA_TYPES else readable
        return Access(tenant, patient_id, patients={patient_id}, resource_types=types)

    async def _register(self, principal: Principal) -> bool:
        """May the caller register a new patient? Returns whether to link it to the caller."""
        if principal.development:
            return False
        allowed = reaches(principal.roles, Permission.PATIENT_REGISTER)
        if Reach.TENANT in allowed:
            return False
        if Reach.SELF in allowed and principal.patient is None:
            async with session_scope(self.sessions) as session:
                from carevault_api.accounts import repository as accounts

                links = await accounts.patients_of(session, principal.subject)
            if not any(link.relation == "self" for link in links):
                return True
        raise AccessDenied("You may not register a patient here.")

    async def _directory(self, principal: Principal, touch: Touch) -> None:
        if principal.development:
            return
        permission = Permission.DIRECTORY_READ if touch.action == "read" else Permission.DIRECTORY_WRITE
        if Reach.TENANT not in reaches(principal.roles, permission):
            raise AccessDenied(f"Your roles do not allow {permission.value}.")

    async def decide(self, principal: Principal, touch: Touch, *, bundle_entry: bool = False) -> Access:
        if principal.break_glass is not None:
            # First, whatever the request: every one of its requests, $everything
            # included, goes through keyservice's check of the case.
            self._scope_check(principal, touch)
            return await self._break_glass(principal, touch, bundle_entry)
        if touch.everything and touch.patient_id is not None and not bundle_entry:
            return await self._everything(principal, touch.patient_id)
        self._scope_check(principal, touch)
        if not is_patient_data(touch.resource_type):
            if touch.resource_type in DIRECTORY_TYPES:
                await self._directory(principal, touch)
            return Access(principal.tenant, "")
        if touch.new_patient:
            link = await self._register(principal) if touch.resource_type == "Patient" else False
            return Access(principal.tenant, "", link_new_patient=link and not bundle_entry)
        if touch.patient_id is not None:
            tenant = await self.patient_tenant(principal, touch.patient_id, touch.resource_type, touch.action)
            return Access(tenant, touch.patient_id, patients={touch.patient_id})
        if principal.development:
            return Access(principal.tenant, ANY_PATIENT)
        if touch.interaction == "r" and not bundle_entry:
            return Access(principal.tenant, ANY_PATIENT, post_check=touch)
        if touch.interaction == "d" and not bundle_entry:
            return Access(principal.tenant, ANY_PATIENT, preflight_delete=touch)
        raise AccessDenied(
            "Name the patient of this request: a patient or subject search parameter, the X-Patient-Id header, "
            "or a resource that references its Patient."
        )

    async def decide_bundle(self, principal: Principal, body: Any) -> Access:
        accesses = [await self.decide(principal, touch, bundle_entry=True) for touch in bundle_touches(body)]
        if principal.development:
            return Access(principal.tenant, ANY_PATIENT)
        tenants = {a.tenant for a in accesses} or {principal.tenant}
        if len(tenants) != 1 or any(a.patient_scope == ANY_PATIENT for a in accesses):
            raise AccessDenied("A Bundle touches the patients of one tenant, each named in its entries.")
        patients = set().union(*(a.patients for a in accesses)) if accesses else set()
        return Access(tenants.pop(), ",".join(sorted(patients)), patients=patients)

    async def check_reported(self, principal: Principal, access: Access, status: int, reported: str | None) -> None:
        """After a read by id: authorize the patient records reports (fail closed)."""
        touch = access.post_check or access.preflight_delete
        if touch is None:
            return
        patients = [p for p in (reported or "").split(",") if p]
        if not patients:
            if 200 <= status < 300:
                raise AccessDenied("The patient of this resource could not be established.")
            return
        if len(patients) != 1:
            raise AccessDenied("The patient of this resource could not be established.")
        tenant = await self.patient_tenant(principal, patients[0], touch.resource_type, touch.action)
        if tenant != access.tenant:
            raise AccessDenied("No consent or link gives you access to this patient's records.")
        access.patients = {patients[0]}
