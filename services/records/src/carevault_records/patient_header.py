"""``x-carevault-patient`` on every records response: the patients whose
keyrings the request asked for, and every patient whose data it named
(:func:`carevault_records.audit_hints.note_patient`, noted before any key check),
comma-separated. api authorizes a read whose patient it could not know in advance
against this header before relaying it, and its audit trail records them."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carevault_records.audit_hints import noted_patients, noting_patients

PATIENT_HEADER = b"x-carevault-patient"


class PatientHeaderMiddleware:
    """Gives each request its set of noted patients and reports them with the answer.
    Pure ASGI: streaming bodies pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_patient(message: Message) -> None:
            if message["type"] == "http.response.start":
                keyrings = scope.get("state", {}).get("keyrings")
                touched = list(getattr(keyrings, "touched", None) or [])
                touched += sorted(noted_patients() - set(touched))
                if touched:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != PATIENT_HEADER]
                    headers.append((PATIENT_HEADER, ",".join(touched).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        with noting_patients():
            await self.app(scope, receive, send_with_patient)
