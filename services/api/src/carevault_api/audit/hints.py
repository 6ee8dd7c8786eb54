"""Which patients a request reached for, as records says in ``x-carevault-patient``.

The FHIR relay reads the header of the one answer it relays. When api itself calls
records several times for one request (Binary content: prepare, commit, open), the
records client notes every answer's header here, and :func:`carevault_api.audit.relay.audited`
reads what the request gathered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar

PATIENTS_HEADER = "x-carevault-patient"
# Ids carevault assigns (records: uuid4).
SERVER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

patients_seen: ContextVar[set[str] | None] = ContextVar("carevault_api_patients_seen", default=None)


def patients_in(headers: Mapping[str, str]) -> set[str]:
    value = next((v for k, v in headers.items() if k.lower() == PATIENTS_HEADER), "")
    return {p for p in value.split(",") if SERVER_ID.match(p)}


def note_patients(headers: Mapping[str, str]) -> None:
    seen = patients_seen.get()
    if seen is not None:
        seen |= patients_in(headers)
