"""Request and response bodies of the administration endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from carevault_api.auth.principal import Role


class NewUser(BaseModel):
    tenant: str | None = Field(default=None, description="default: the administrator's tenant")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    roles: list[Role]
    totp: bool | None = Field(default=None, description="enrol TOTP now (always for roles that require it)")


class RolesUpdate(BaseModel):
    roles: list[Role]


class PatientLinkIn(BaseModel):
    patient_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    relation: Literal["self", "representative"]


class EnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


class UserOut(BaseModel):
    id: str
    tenant: str
    username: str
    roles: list[str]
    totp_enrolled: bool
    enrolment: EnrolmentOut | None = None


class NewClient(BaseModel):
    tenant: str | None = None
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["backend", "app"]
    jwks: dict[str, object] | None = Field(default=None, description="backend clients: their public keys (RS384/ES384)")
    jwks_uri: str | None = Field(default=None, max_length=2000, description="backend clients: or the https URL of their JWKS")
    redirect_uris: list[str] = Field(default_factory=list)
    scopes: str = Field(min_length=1, max_length=2000)


class ClientOut(BaseModel):
    client_id: str
    tenant: str
    name: str
    kind: str
    jwks_uri: str | None = None
    scopes: str
    redirect_uris: list[str]
    disabled: bool
