"""What api tells records about a FHIR request."""

from __future__ import annotations

from fastapi import Request

from carevault_api.auth.principal import Principal

# The client headers records needs; everything else stays at the api.
RECORDS_HEADERS = frozenset({"content-type", "accept", "if-match", "prefer", "idempotency-key", "x-patient-key"})


def public_base_url(request: Request) -> str:
    """The FHIR base as the client sees it (the gateway sets the forwarded host)."""
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "localhost")
    return f"https://{host}/fhir"


def records_headers(client_headers: dict[str, str], principal: Principal, request: Request) -> dict[str, str]:
    return client_headers | {
        "x-carevault-tenant": principal.tenant,
        "x-carevault-principal": principal.subject,
        "x-carevault-base-url": public_base_url(request),
    }
