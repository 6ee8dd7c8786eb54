"""The audit trail: append events (fail closed), sign checkpoints, prune by retention.

An append is a short transaction on api's database: lock the chain head, insert the
event with ``hash = H(previous hash, canonical event)``, move the head, commit.
Events that arrive while one is being written go together in the next transaction
(group commit). Each caller waits until its own event is durable; if it cannot be
stored, the caller gets :class:`AuditUnavailable` (503) and must not go on: no access
goes unrecorded.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

from fastapi import Request
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.audit import repository
from carevault_api.audit.events import spec
from carevault_api.auth.principal import Principal
from carevault_common.auditchain import EventContent, canonical_details, checkpoint_payload
from carevault_common.db import database_error_code, is_sqlite_lock_conflict, session_scope
from carevault_common.errors import ProblemError
from carevault_common.logging import Verbatim, request_id_var
from carevault_crypto.checkpoint import CheckpointSigner
from carevault_crypto.pseudonym import PseudonymKey

logger = logging.getLogger("carevault.api.audit")

EVENTS_RECORDED = Counter("carevault_audit_events_total", "Audit events stored, by event name.", ["event"])
APPEND_FAILURES = Counter("carevault_audit_append_failures_total", "Audit events that could not be stored (requests refused with 503).")
APPEND_SECONDS = Histogram(
    "carevault_audit_append_seconds",
    "Time to store one audit event (head lock, insert, commit).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5),
)
# Events written in one transaction at most (group commit, see AuditTrail._write_pending).
MAX_BATCH = 200
# A batch SQLite refused at once (another process's write) is tried again this often.
SQLITE_CONFLICT_RETRIES = 4
CHECKPOINT_LAG = Gauge("carevault_audit_unsigned_events", "Events after the last signed checkpoint, as last seen by this replica.")


class EventFields(TypedDict, total=False):
    """What an event may say besides its name, actor and outcome (``AuditTrail.append``)."""

    resource_type: str | None
    resource_id: str | None
    patient_id: str | None
    details: Mapping[str, str | int | bool | list[str]] | None


class AuditUnavailable(ProblemError):
    status, code, title = 503, "audit-unavailable", "The audit trail cannot record this request, so it was not carried out"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: from the Principal when there is one (sign-in failures have none)."""

    tenant: str
    subject: str | None
    client_id: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None

    @classmethod
    def of(cls, principal: Principal, purpose: str | None = None) -> Actor:
        # The OAuth2 Principal will carry the client, and may carry the purpose of use
        # and the consent or legal basis of the access; the dev Principal carries none.
        # A hosting doctor's break-glass token acts for one purpose only: break the glass.
        if principal.break_glass is not None:
            purpose = "BTG"
        return cls(
            principal.tenant,
            principal.subject,
            getattr(principal, "client_id", None),
            getattr(principal, "purpose", None) or purpose,
            getattr(principal, "legal_basis", None),
        )


class AuditTrail:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pseudonyms: PseudonymKey,
        signer: CheckpointSigner | None,
        *,
        retention: timedelta,
        lock_timeout_ms: int = 2000,
    ) -> None:
        self.sessions = sessions
        self.pseudonyms = pseudonyms
        self.signer = signer
        self.retention = retention
        self.lock_timeout_ms = lock_timeout_ms
        self._pending: list[tuple[EventContent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def pseudonym(self, tenant: str, patient_id: str) -> str:
        return self.pseudonyms.pseudonym(tenant, patient_id)

    async def append(self, event: str, actor: Actor, *, outcome: int | None, **fields: Unpack[EventFields]) -> str:
        """Store one event; returns its id. Raises :class:`AuditUnavailable`.

        ``patient_id`` is stored as its pseudonym only. For a Patient resource the
        id *is* the patient id, so it is stored as that pseudonym too.
        """
        content = self._content(event, actor, outcome, **fields)
        started = time.perf_counter()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((content, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        try:
            await asyncio.shield(done)
        except AuditUnavailable:
            logger.error("audit event not stored", extra={"event": event})
            raise
        APPEND_SECONDS.observe(time.perf_counter() - started)
        EVENTS_RECORDED.labels(event).inc()
        return content.event_id

    def _content(
        self,
        event: str,
        actor: Actor,
        outcome: int | None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        patient_id: str | None = None,
        details: Mapping[str, str | int | bool | list[str]] | None = None,
    ) -> EventContent:
        definition = spec(event)
        patient = self.pseudonym(actor.tenant, patient_id) if patient_id else None
        if resource_type == "Patient" and resource_id:
            patient = patient or self.pseudonym(actor.tenant, resource_id)
            resource_id = None
        return EventContent(
            event_id=str(uuid.uuid4()),
            recorded_at=datetime.now(UTC),  # replaced under the lock
            tenant=actor.tenant,
            event=event,
            category=definition.category,
            action=definition.action,
            outcome=outcome,
            resource_type=resource_type,
            resource_id=resource_id,
            patient=patient,
            principal=actor.subject,
            client_id=actor.client_id,
            request_id=request_id_var.get() or None,
            purpose=actor.purpose,
            legal_basis=actor.legal_basis or definition.legal_basis,
            details=canonical_details(dict(details or {})),
        )

    async def append_in(
        self, session: AsyncSession, event: str, actor: Actor, *, outcome: int | None, **fields: Unpack[EventFields]
    ) -> str:
        """Store one event in ``session``'s transaction: it commits, or rolls back, with
        the act that session carries (an administrative change and its event are one
        transaction). The chain head stays locked until then. Raises :class:`AuditUnavailable`;
        the session must then be rolled back (letting the error propagate does that)."""
        content = self._content(event, actor, outcome, **fields)
        try:
            head = await repository.lock_head(session, self.lock_timeout_ms)
            await repository.append_locked(session, head, [dataclasses.replace(content, recorded_at=datetime.now(UTC))])
        except SQLAlchemyError as exc:
            APPEND_FAILURES.inc()
            logger.error(
                "audit event not stored", extra={"event": event, "error_type": type(exc).__name__, "error_code": database_error_code(exc)}
            )
            raise AuditUnavailable("The audit trail is unavailable; nothing was changed. Retry later.") from None
        EVENTS_RECORDED.labels(event).inc()
        return content.event_id

    async def _write_pending(self) -> None:
        """Group commit: the events that arrived while the previous batch was being
        written go in one transaction (one head lock, one fsync), in arrival order.
        A batch fails or succeeds whole; each waiting request learns which."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._store([content for content, _ in batch])
            except Exception as exc:  # whatever it is, every waiter must learn it: none may hang
                APPEND_FAILURES.inc(len(batch))
                logger.warning(
                    "audit batch not stored",
                    extra={"events": len(batch), "error_type": type(exc).__name__, "error_code": database_error_code(exc)},
                )
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(AuditUnavailable("The audit trail is unavailable; nothing was relayed. Retry later."))
                continue
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)

    async def _store(self, contents: list[EventContent]) -> None:
        """One transaction that appends ``contents`` at the head. SQLite can refuse it
        at once when another process writes (see ``is_sqlite_lock_conflict``); it
        then stored nothing, and is run again, a few times, before the callers are
        refused."""
        for attempt in range(SQLITE_CONFLICT_RETRIES + 1):
            try:
                async with session_scope(self.sessions) as session:
                    head = await repository.lock_head(session, self.lock_timeout_ms)
                    now = datetime.now(UTC)
                    await repository.append_locked(session, head, [dataclasses.replace(content, recorded_at=now) for content in contents])
                return
            except SQLAlchemyError as exc:
                if attempt == SQLITE_CONFLICT_RETRIES or not is_sqlite_lock_conflict(exc):
                    raise
                logger.info("audit batch met a SQLite lock conflict; writing it again", extra={"error_code": database_error_code(exc)})
                await asyncio.sleep(0.005 * 2**attempt)

    # -- checkpoints and retention ---------------------------------------------------------

    async def checkpoint(self) -> int | None:
        """Sign the chain head if it moved since the last checkpoint; returns its seq."""
        if self.signer is None:
            return None
        async with session_scope(self.sessions) as session:
            head = await repository.get_head(session)
            last = await repository.last_checkpoint(session)
            CHECKPOINT_LAG.set(head.seq - (last.seq if last else 0))
            if head.seq == 0 or (last is not None and last.seq >= head.seq):
                return None
            signed_at = datetime.now(UTC)
            signature = self.signer.sign(checkpoint_payload(head.seq, head.hash, signed_at))
            added = await repository.add_checkpoint(
                session, seq=head.seq, chain_hash=head.hash, signed_at=signed_at, key_id=self.signer.key_id, signature=signature
            )
        if added:
            CHECKPOINT_LAG.set(0)
            # Also into the log stream, which is shipped elsewhere: an anchor outside the
            # database (`carevault audit verify --log-checkpoints`).
            logger.info(
                "audit checkpoint",
                extra={
                    "audit_seq": head.seq,
                    # Verbatim: `audit verify --log-checkpoints` checks these exact values.
                    "signed_at": Verbatim(signed_at.isoformat()),
                    "key_id": Verbatim(self.signer.key_id),
                    "signature": Verbatim(base64.urlsafe_b64encode(signature).decode().rstrip("=")),
                },
            )
        return head.seq

    async def prune(self, now: datetime | None = None) -> int:
        """Drop events older than the retention period, up to the newest checkpoint
        signed before the cutoff; records ``audit.pruned``. Returns events dropped."""
        now = now or datetime.now(UTC)
        async with session_scope(self.sessions) as session:
            head = await repository.lock_head(session, self.lock_timeout_ms)
            start = await repository.anchor_seq(session)
            checkpoint = await repository.checkpoint_before(session, now - self.retention, start)
            if checkpoint is None:
                return 0
            dropped = await repository.prune_to(session, checkpoint, now)
            content = EventContent(
                event_id=str(uuid.uuid4()),
                recorded_at=now,
                tenant="*",
                event="audit.pruned",
                category="audit",
                action="D",
                outcome=None,
                resource_type=None,
                resource_id=None,
                patient=None,
                principal=None,
                client_id=None,
                request_id=None,
                purpose=None,
                legal_basis=spec("audit.pruned").legal_basis,
                details=canonical_details({"up_to_seq": checkpoint.seq, "events": dropped, "retention_days": self.retention.days}),
            )
            await repository.append_locked(session, head, [content])
        logger.info("audit events pruned", extra={"up_to_seq": checkpoint.seq, "events": dropped})
        return dropped

    async def maintain(self, checkpoint_every: float, prune_every: float) -> None:
        """The background loop of each replica: checkpoints, and retention now and then.
        Replicas may both try; the head lock and the checkpoint key make it harmless."""
        next_prune = time.monotonic()
        while True:
            await asyncio.sleep(checkpoint_every)
            try:
                await self.checkpoint()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + prune_every
                    await self.prune()
            except Exception as exc:  # the loop must outlive a bad moment of the database
                logger.warning("audit maintenance failed", extra={"error_type": type(exc).__name__, "error_code": database_error_code(exc)})


def trail_of(request: Request) -> AuditTrail:
    trail: AuditTrail = request.app.state.audit
    return trail


async def record(
    request: Request,
    event: str,
    *,
    outcome: int | None,
    principal: Principal | None = None,
    tenant: str | None = None,
    subject: str | None = None,
    client_id: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    patient_id: str | None = None,
    purpose: str | None = None,
    legal_basis: str | None = None,
    details: Mapping[str, str | int | bool | list[str]] | None = None,
    session: AsyncSession | None = None,
) -> str:
    """Record one audit event for the current request; returns its id.

    For the domains of api that act without going through the FHIR relay: sign-in
    (``signin.*``, ``token.*``), administration (``admin.*``), break-glass
    (``breakglass.*``). ``event`` must be a name of :mod:`carevault_api.audit.events`.
    Who acts comes from ``principal``, or from ``tenant``/``subject``/``client_id``
    when there is none yet (a refused sign-in names the account it tried). Never pass
    content: ``details`` holds codes and counts (a grant type, a reason code).

    Raises :class:`AuditUnavailable` (a 503 problem) if the event cannot be stored:
    let it propagate, so that the act is refused rather than unrecorded.

    ``session``: the request's session when it carries the act's writes. The event then
    goes into that transaction (:meth:`AuditTrail.append_in`): act and event commit
    together or not at all. Pass it whenever the session has written (on SQLite the
    separate writer would otherwise wait for that session's write lock).
    """
    if principal is not None:
        actor = Actor.of(principal, purpose)
        actor = dataclasses.replace(actor, client_id=client_id or actor.client_id, legal_basis=legal_basis or actor.legal_basis)
    else:
        if tenant is None:
            raise ValueError("record() needs a principal or a tenant")
        actor = Actor(tenant, subject, client_id, purpose, legal_basis)
    if session is not None:
        return await trail_of(request).append_in(
            session,
            event,
            actor,
            outcome=outcome,
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=patient_id,
            details=details,
        )
    return await trail_of(request).append(
        event, actor, outcome=outcome, resource_type=resource_type, resource_id=resource_id, patient_id=patient_id, details=details
    )
