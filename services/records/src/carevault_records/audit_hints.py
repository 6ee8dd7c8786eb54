"""What records tells api about a request, for api's audit trail: which patients'
data the request reached for (``x-carevault-patients``, comma-separated ids).

A patient is noted as soon as a request names their data, before any key check:
an attempt with a wrong key is an access attempt the patient may ask about. api
strips the header before anything reaches the client (x-carevault-* headers are
the mesh's own).
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATIENTS_HEADER = b"x-carevault-patients"

_touched: ContextVar[set[str] | None] = ContextVar("carevault_records_patients_touched", default=None)


def note_patient(patient_id: str) -> None:
    """Record that the current request reached for ``patient_id``'s data."""
    touched = _touched.get()
    if touched is not None:
        touched.add(patient_id)


class PatientHintMiddleware:
    """Adds ``x-carevault-patients`` to each response whose request reached for
    patient data. Pure ASGI: streaming bodies pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        touched: set[str] = set()
        token = _touched.set(touched)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and touched:
                headers = [*message.get("headers", []), (PATIENTS_HEADER, ",".join(sorted(touched)).encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _touched.reset(token)
