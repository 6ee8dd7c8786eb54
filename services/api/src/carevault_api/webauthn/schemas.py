"""Request and response bodies of ``/account/webauthn``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class NewCredential(BaseModel):
    credential: dict[str, Any] = Field(description="the RegistrationResponseJSON of navigator.credentials.create()")
    name: str = Field(default="security key", min_length=1, max_length=100)


class CredentialOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
