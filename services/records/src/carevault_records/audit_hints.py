"""What records tells api about a request, for api's audit trail: which patients'
data the request reached for. They go out in sign-in's ``x-carevault-patient``
header (:mod:`carevault_records.patient_header`), beside the patients whose
keyrings the request asked for.

A patient is noted as soon as a request names their data, before any key check:
an attempt with a wrong key is an access attempt the patient may ask about. api
strips the header before anything reaches the client (x-carevault-* headers are
the mesh's own).
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

_touched: ContextVar[set[str] | None] = ContextVar("carevault_records_patients_touched", default=None)


def note_patient(patient_id: str) -> None:
    """Record that the current request reached for ``patient_id``'s data."""
    touched = _touched.get()
    if touched is not None:
        touched.add(patient_id)


def noted_patients() -> set[str]:
    """The patients the current request reached for so far."""
    return set(_touched.get() or ())


class PatientHintMiddleware:
    """Gives each request its set of noted patients; :class:`PatientHeaderMiddleware`
    (inside this one) reports them. Pure ASGI: streaming bodies pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _touched.set(set())
        try:
            await self.app(scope, receive, send)
        finally:
            _touched.reset(token)
