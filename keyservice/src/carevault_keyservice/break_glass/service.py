"""The break-glass workflow, enforced here from keyservice's own state.

api says who is acting (it authenticated them); keyservice decides what that
person may do with a request: nobody approves their own request, a decision is
final, the package is released only to the requester, only while the approval
is fresh and the case not closed; the requester's patient-scoped access (api's
break-glass token) is honoured only after the package was downloaded, while the
approval is fresh and the case open. No step trusts api's word that an earlier
step happened.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.errors import Conflict, Forbidden, NotFound, ProblemError
from carevault_keyservice.break_glass import repository
from carevault_keyservice.escrow import repository as escrow_repository
from carevault_keyservice.models import BreakGlassRequest

OPEN, APPROVED, REJECTED, CLOSED = "open", "approved", "rejected", "closed"

# The CarevaultBreakGlassOpened alert (charts/carevault/templates/common/prometheusrule.yaml) watches it.
REQUESTS_OPENED = Counter("carevault_break_glass_requests_total", "Break-glass requests opened.")


class SelfApproval(ProblemError):
    status, code, title = 403, "self-approval", "A break-glass request must be decided by someone other than its requester"


class NotReleasable(ProblemError):
    status, code, title = 403, "not-releasable", "This request does not release a package now"


class NoAccess(ProblemError):
    status, code, title = 403, "break-glass-not-open", "This request gives no access to the patient's records now"


@dataclass(frozen=True, slots=True)
class ReleasedPackage:
    tenant: str
    patient_id: str
    key_version: int
    doctor_key_id: str
    package_b64: str


def _effective_status(request: BreakGlassRequest, now: datetime) -> str:
    expires = request.expires_at
    if request.status == APPROVED and expires is not None and _utc(expires) <= now:
        return "expired"
    return request.status


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def describe(request: BreakGlassRequest, now: datetime | None = None) -> dict[str, object]:
    now = now or datetime.now(UTC)
    return {
        "id": request.id,
        "tenant": request.tenant,
        "patient_id": request.patient_id,
        "requester": request.requester,
        "reason": request.reason,
        "document_sha256": request.document_sha256,
        "status": _effective_status(request, now),
        "decided_by": request.decided_by,
        "created_at": _utc(request.created_at).isoformat(),
        "decided_at": _utc(request.decided_at).isoformat() if request.decided_at else None,
        "expires_at": _utc(request.expires_at).isoformat() if request.expires_at else None,
        "downloads": request.downloads,
        "closed_by": request.closed_by,
        "closed_at": _utc(request.closed_at).isoformat() if request.closed_at else None,
    }


async def open_request(
    session: AsyncSession, *, tenant: str, patient_id: str, requester: str, reason: str, document_sha256: str
) -> BreakGlassRequest:
    if not await escrow_repository.latest_packages(session, tenant, patient_id):
        raise NotFound("No escrowed key exists for this patient.")
    request = BreakGlassRequest(
        id=str(uuid.uuid4()),
        tenant=tenant,
        patient_id=patient_id,
        requester=requester,
        reason=reason,
        document_sha256=document_sha256,
        status=OPEN,
        created_at=datetime.now(UTC),
        downloads=0,
    )
    await repository.add(session, request)
    REQUESTS_OPENED.inc()
    return request


async def get(session: AsyncSession, request_id: str) -> BreakGlassRequest:
    request = await repository.get(session, request_id)
    if request is None:
        raise NotFound("No such break-glass request.")
    return request


async def _get(session: AsyncSession, request_id: str) -> BreakGlassRequest:
    request = await repository.get_for_update(session, request_id)
    if request is None:
        raise NotFound("No such break-glass request.")
    return request


async def decide(session: AsyncSession, request_id: str, *, decided_by: str, approve: bool, window: timedelta) -> BreakGlassRequest:
    request = await _get(session, request_id)
    if decided_by == request.requester:
        raise SelfApproval()
    if request.status != OPEN:
        raise Conflict(f"This request was already {request.status}.")
    now = datetime.now(UTC)
    request.status = APPROVED if approve else REJECTED
    request.decided_by, request.decided_at = decided_by, now
    request.expires_at = now + window if approve else None
    await session.flush()
    return request


async def release(session: AsyncSession, request_id: str, *, requester: str) -> list[ReleasedPackage]:
    request = await _get(session, request_id)
    if requester != request.requester:
        raise Forbidden("Only the requester may download the package.")
    status = _effective_status(request, datetime.now(UTC))
    if status != APPROVED:
        raise NotReleasable(f"The request is {status}.")
    packages = await escrow_repository.latest_packages(session, request.tenant, request.patient_id)
    request.downloads += 1
    await session.flush()
    return [
        ReleasedPackage(p.tenant, p.patient_id, p.key_version, p.doctor_key_id, base64.b64encode(p.package).decode("ascii"))
        for p in packages
    ]


async def check_access(session: AsyncSession, request_id: str, *, requester: str) -> BreakGlassRequest:
    """May ``requester`` read the patient's records under this request now? Only the
    requester, only after the package was downloaded, only while the approval is
    fresh and the case open. Asked by api on every read with a break-glass token."""
    request = await get(session, request_id)
    if requester != request.requester:
        raise Forbidden("Only the requester reads under a break-glass request.")
    status = _effective_status(request, datetime.now(UTC))
    if status != APPROVED:
        raise NoAccess(f"The request is {status}.")
    if request.downloads == 0:
        raise NoAccess("The escrow package has not been downloaded under this request.")
    return request


async def close(session: AsyncSession, request_id: str, *, closed_by: str) -> BreakGlassRequest:
    """End a case: an open request is withdrawn, an approved one stops releasing
    packages and giving access. A rejected or closed one stays as it is."""
    request = await _get(session, request_id)
    if request.status not in (OPEN, APPROVED):
        raise Conflict(f"This request was already {request.status}.")
    request.status = CLOSED
    request.closed_by, request.closed_at = closed_by, datetime.now(UTC)
    await session.flush()
    return request
