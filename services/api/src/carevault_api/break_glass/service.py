"""The hosting doctor's break-glass workflow as api runs it: who may do what
(the permission matrix, second factor), the request document, the audit trail,
the patient-scoped token. keyservice runs the workflow itself (self-approval,
one decision, release only to the requester within the window, access only
while the case is open); api tells it who acts and relays its refusals.

Every step is an audit event in the patient's tenant, with the patient's
pseudonym, so that the tenant's auditors and the patient (with their key) see it:
``breakglass.requested``, ``.approved``, ``.rejected``, ``.document.read``,
``.released``, ``.token.issued``, ``.closed``; any refused step is
``breakglass.refused`` with the step and the problem code. A step that hands
something out (the document, the package, the token) is recorded before the
answer leaves: if the event cannot be stored, nothing is handed out.

api's own storage (where each document is) is written in short transactions of
their own, committed before the audit event is appended: on SQLite a write
transaction held open across the append would block it.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api import audit
from carevault_api.accounts import repository as accounts
from carevault_api.audit.service import Actor, AuditTrail
from carevault_api.auth.principal import Principal
from carevault_api.auth.scopes import format_scopes, narrow, parse_scopes
from carevault_api.authorization.matrix import Permission
from carevault_api.authorization.service import Grant, check
from carevault_api.break_glass import documents, repository
from carevault_api.break_glass.schemas import NewRequest
from carevault_api.clients.fileservice import FileserviceClient
from carevault_api.clients.keyservice import KeyserviceClient
from carevault_api.oauth.service import OAuthService
from carevault_api.secrets import Secrets
from carevault_common.db import session_scope
from carevault_common.errors import Forbidden, NotFound, PayloadTooLarge, ProblemError

PURPOSE = "BTG"  # HL7 v3 ActReason: break the glass
#: What a break-glass token may do, at most (narrowed by the doctor's own token's scopes).
READ_SCOPE = "user/*.rs"


class InvalidDocument(ProblemError):
    status, code, title = 422, "invalid-document", "The request document is not valid"


@dataclass
class Attempt:
    """One step by one person; ``case`` (keyservice's view of the request) once known."""

    step: str
    principal: Principal
    case: dict[str, Any] | None = None
    tenant: str | None = None
    patient_id: str | None = None
    details: dict[str, str | int | bool | list[str]] = field(default_factory=dict)

    def where(self) -> tuple[str, str | None]:
        """The tenant and patient the event belongs to: the patient's, once known."""
        if self.case is not None:
            return str(self.case["tenant"]), str(self.case["patient_id"])
        return self.tenant or self.principal.tenant, self.patient_id


@dataclass(frozen=True, slots=True)
class BreakGlassSettings:
    token_ttl_seconds: int
    document_max_bytes: int


class BreakGlass:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: KeyserviceClient,
        files: FileserviceClient,
        secrets: Secrets,
        oauth: OAuthService,
        trail: AuditTrail,
        settings: BreakGlassSettings,
    ) -> None:
        self.sessions = sessions
        self.keys, self.files, self.secrets, self.oauth, self.trail, self.settings = keys, files, secrets, oauth, trail, settings

    # -- audit -------------------------------------------------------------------------

    async def _record(self, request: Request, event: str, attempt: Attempt, outcome: int, **extra: str | int | bool | list[str]) -> None:
        tenant, patient_id = attempt.where()
        details: dict[str, str | int | bool | list[str]] = {"step": attempt.step, "actor_tenant": attempt.principal.tenant}
        if attempt.case is not None:
            details["request"] = str(attempt.case["id"])
        details |= attempt.details | extra
        await audit.record(
            request,
            event,
            outcome=outcome,
            tenant=tenant,
            subject=attempt.principal.subject,
            client_id=attempt.principal.client_id,
            patient_id=patient_id,
            purpose=PURPOSE,
            details=details,
        )

    @asynccontextmanager
    async def _refusals(self, request: Request, attempt: Attempt) -> AsyncIterator[Attempt]:
        """Any refusal of the step is recorded (``breakglass.refused``), then raised."""
        try:
            yield attempt
        except audit.AuditUnavailable:
            raise
        except ProblemError as refused:
            await self._record(request, "breakglass.refused", attempt, refused.status, problem=refused.code)
            raise

    async def _case(self, attempt: Attempt, request_id: str) -> dict[str, Any]:
        attempt.case = await self.keys.get_request(request_id)
        return attempt.case

    # -- who may see a request -----------------------------------------------------------

    @staticmethod
    def _grant(principal: Principal, permission: Permission) -> Grant | None:
        try:
            return check(principal, permission)
        except Forbidden:
            return None

    def _may_view(self, principal: Principal, tenant: str) -> bool:
        doctor = self._grant(principal, Permission.BREAK_GLASS)
        decider = self._grant(principal, Permission.BREAK_GLASS_DECIDE)
        return (doctor is not None and doctor.covers_tenant(tenant)) or (decider is not None and decider.covers_tenant(tenant))

    def _viewer(self, principal: Principal, tenant: str) -> None:
        if not self._may_view(principal, tenant):
            # The second factor first: a doctor or administrator without it learns that.
            for permission in (Permission.BREAK_GLASS, Permission.BREAK_GLASS_DECIDE):
                try:
                    check(principal, permission)
                except Forbidden as refused:
                    if refused.code == "second-factor-required":
                        raise
            raise Forbidden("Break-glass requests are seen by hosting doctors and the administrators who decide them.")

    async def _described(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with session_scope(self.sessions) as session:
            stored = await repository.documents_of(session, [str(c["id"]) for c in cases])
        described = []
        for case in cases:
            document = stored.get(str(case["id"]))
            view = dict(case)
            view["document"] = (
                {"contentType": document.content_type, "size": document.size, "sha256": document.sha256} if document else None
            )
            described.append(view)
        return described

    # -- the steps -----------------------------------------------------------------------

    async def open(self, request: Request, principal: Principal, body: NewRequest) -> dict[str, Any]:
        attempt = Attempt("open", principal)
        async with session_scope(self.sessions) as session:
            known_tenant = await accounts.get_tenant(session, body.tenant) is not None
        if known_tenant:
            attempt.tenant, attempt.patient_id = body.tenant, body.patient_id
        async with self._refusals(request, attempt):
            check(principal, Permission.BREAK_GLASS)
            if not known_tenant:
                raise NotFound("No such tenant.")
            content = self._document_bytes(body.document.data)
            stored = await documents.store(self.files, self.secrets, content, body.document.contentType)
            try:
                case = await self.keys.open_request(
                    tenant=body.tenant,
                    patient_id=body.patient_id,
                    requester=principal.subject,
                    reason=body.reason,
                    document_sha256=stored.sha256,
                )
            except ProblemError:
                await documents.discard(self.files, stored.blob_id)
                raise
            attempt.case = case
            async with session_scope(self.sessions) as session:
                await repository.add_document(session, stored.row(str(case["id"])))
        await self._record(request, "breakglass.requested", attempt, 201, document_bytes=stored.size)
        return (await self._described([case]))[0]

    def _document_bytes(self, data: str) -> bytes:
        limit = self.settings.document_max_bytes
        if len(data) > (limit + 2) // 3 * 4 + 4:
            raise PayloadTooLarge(f"The request document is limited to {limit} bytes.")
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidDocument("document.data must be base64.") from None
        if not content:
            raise InvalidDocument("The request document is empty.")
        if len(content) > limit:
            raise PayloadTooLarge(f"The request document is limited to {limit} bytes.")
        return content

    async def list_requests(self, principal: Principal, tenant: str | None) -> list[dict[str, Any]]:
        target = tenant or principal.tenant
        self._viewer(principal, target)
        return await self._described(await self.keys.list_requests(target))

    async def get(self, principal: Principal, request_id: str) -> dict[str, Any]:
        case = await self.keys.get_request(request_id)
        self._viewer(principal, str(case["tenant"]))
        return (await self._described([case]))[0]

    async def document(self, request: Request, principal: Principal, request_id: str) -> tuple[bytes, str]:
        attempt = Attempt("document", principal)
        async with self._refusals(request, attempt):
            case = await self._case(attempt, request_id)
            self._viewer(principal, str(case["tenant"]))
            async with session_scope(self.sessions) as session:
                stored = await repository.get_document(session, request_id)
            if stored is None:
                raise NotFound("This request has no stored document.")
            content = await documents.read(self.files, self.secrets, stored, str(case["document_sha256"]))
        await self._record(request, "breakglass.document.read", attempt, 200)
        return content, stored.content_type

    async def decide(self, request: Request, principal: Principal, request_id: str, approve: bool) -> dict[str, Any]:
        attempt = Attempt("decide", principal, details={"approve": approve})
        async with self._refusals(request, attempt):
            case = await self._case(attempt, request_id)
            grant = check(principal, Permission.BREAK_GLASS_DECIDE)
            if not grant.covers_tenant(str(case["tenant"])):
                raise Forbidden("Decide break-glass requests of patients of your own tenant.")
            # keyservice refuses the requester's own decision (self-approval) and a second one.
            decided = await self.keys.decide(request_id, decided_by=principal.subject, approve=approve)
            attempt.case = decided
        await self._record(request, "breakglass.approved" if approve else "breakglass.rejected", attempt, 200)
        return decided

    async def release(self, request: Request, principal: Principal, request_id: str) -> list[dict[str, Any]]:
        attempt = Attempt("release", principal)
        async with self._refusals(request, attempt):
            await self._case(attempt, request_id)
            check(principal, Permission.BREAK_GLASS)
            # keyservice: only the requester, only approved, fresh and not closed.
            packages = await self.keys.release(request_id, requester=principal.subject)
        doctor_keys = sorted({str(p["doctor_key_id"]) for p in packages})
        await self._record(request, "breakglass.released", attempt, 200, packages=len(packages), doctor_keys=doctor_keys)
        return packages

    async def token(self, request: Request, principal: Principal, request_id: str, presented: Mapping[str, Any]) -> dict[str, Any]:
        """A short-lived access token that reads this case's one patient's records.

        Bound to the same DPoP key as the doctor's own token (``presented``: its
        claims), expiring with the approval at the latest."""
        attempt = Attempt("token", principal)
        async with self._refusals(request, attempt):
            await self._case(attempt, request_id)
            check(principal, Permission.BREAK_GLASS)
            # keyservice: the requester, after the download, approved, fresh, not closed.
            case = await self.keys.check_access(request_id, requester=principal.subject)
            attempt.case = case
            wanted, _, _ = parse_scopes(READ_SCOPE)
            scopes = narrow(wanted, list(principal.scopes))
            if not scopes:
                raise Forbidden("Your session's scopes do not allow reading records (sign in with user/ read scopes).")
            now = int(time.time())
            expires = now + self.settings.token_ttl_seconds
            if case.get("expires_at"):
                expires = min(expires, int(datetime.fromisoformat(str(case["expires_at"])).astimezone(UTC).timestamp()))
            if expires <= now:
                raise Forbidden("The approval has expired.")
            cnf = presented.get("cnf")
            jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
            issued = self._sign(principal, case, format_scopes(scopes), now, expires, jkt)
        await self._record(request, "breakglass.token.issued", attempt, 200, expires_in=expires - now, token=issued["jti"])
        del issued["jti"]
        return issued

    def _sign(self, principal: Principal, case: Mapping[str, Any], scope: str, now: int, expires: int, jkt: str | None) -> dict[str, Any]:
        """The token's claims are those of api's other access tokens, in the patient's
        tenant, with no role (no endpoint that checks the permission matrix accepts
        it) and the ``break_glass`` claim naming the request."""
        jti = uuid.uuid4().hex
        settings = self.oauth.settings
        claims: dict[str, Any] = {
            "iss": settings.issuer,
            "sub": principal.subject,
            "aud": settings.fhir_base,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": jti,
            "client_id": principal.client_id,
            "scope": scope,
            "tenant": str(case["tenant"]),
            "kind": "user",
            "roles": [],
            "amr": ["pwd", "mfa"],
            "patient": str(case["patient_id"]),
            "break_glass": str(case["id"]),
        }
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        return {
            "access_token": self.oauth.keys.sign(claims),
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": expires - now,
            "scope": scope,
            "patient": str(case["patient_id"]),
            "tenant": str(case["tenant"]),
            "jti": jti,
        }

    async def close(self, request: Request, principal: Principal, request_id: str) -> dict[str, Any]:
        attempt = Attempt("close", principal)
        async with self._refusals(request, attempt):
            case = await self._case(attempt, request_id)
            requester = self._grant(principal, Permission.BREAK_GLASS) is not None and principal.subject == case["requester"]
            decider = self._grant(principal, Permission.BREAK_GLASS_DECIDE)
            if not requester and not (decider is not None and decider.covers_tenant(str(case["tenant"]))):
                self._viewer(principal, str(case["tenant"]))  # a missing second factor, said as such
                raise Forbidden("A case is closed by its requester or an administrator who may decide it.")
            closed = await self.keys.close_request(request_id, closed_by=principal.subject)
            attempt.case = closed
        await self._record(request, "breakglass.closed", attempt, 200)
        return closed

    # -- reads with a break-glass token (FhirAuthorizer.break_glass_case) -----------------

    async def check_case(self, principal: Principal) -> None:
        """Before each FHIR request with a break-glass token: keyservice confirms the
        case still gives access; a refusal is recorded for the patient's tenant."""
        assert principal.break_glass is not None
        try:
            case = await self.keys.check_access(principal.break_glass, requester=principal.subject)
            if (case["tenant"], case["patient_id"]) != (principal.tenant, principal.patient):
                raise Forbidden("This break-glass token does not match its request.")
        except audit.AuditUnavailable:
            raise
        except ProblemError as refused:
            actor = Actor(principal.tenant, principal.subject, principal.client_id, PURPOSE)
            details: dict[str, str | int | bool | list[str]] = {
                "step": "read",
                "request": principal.break_glass,
                "problem": refused.code,
            }
            await self.trail.append("breakglass.refused", actor, outcome=refused.status, patient_id=principal.patient, details=details)
            raise
