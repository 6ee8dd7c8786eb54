"""Reading the audit events of sign-in, tokens, administration and consents straight
from api's database (the tests compare them with docs/audit.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tests.audit_support import last_seq
from tests.support import RunningMesh

__all__ = ["Event", "events_after", "last_seq", "raw_events_after"]

COLUMNS = "seq, event, outcome, tenant, principal, client_id, resource_type, resource_id, patient, legal_basis, details"


@dataclass(frozen=True)
class Event:
    event: str
    outcome: int | None
    tenant: str
    principal: str | None
    client_id: str | None
    resource_type: str | None
    resource_id: str | None
    patient: str | None
    legal_basis: str | None
    details: dict[str, Any]


async def events_after(mesh: RunningMesh, seq: int, *, health_data: bool = False) -> list[Event]:
    """The events stored after ``seq``, in order (without the fhir.* ones unless asked)."""
    rows = await mesh.db_execute("api", f"SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq", seq)
    events = [
        Event(str(r[1]), r[2], str(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], orjson.loads(str(r[10])))  # type: ignore[arg-type]
        for r in rows
    ]
    return [e for e in events if health_data or not e.event.startswith(("fhir.", "audit."))]


async def raw_events_after(mesh: RunningMesh, seq: int) -> str:
    """Every column an event's recorder fills (not the chain's seq, time and hashes) of
    every event after ``seq``, as one text (for scans)."""
    columns = "event, tenant, principal, client_id, resource_type, resource_id, patient, request_id, purpose, legal_basis, details"
    rows = await mesh.db_execute("api", f"SELECT {columns} FROM audit_events WHERE seq > $1 ORDER BY seq", seq)
    return "\n".join(" ".join(str(v) for v in row) for row in rows)
