"""Tables of sign-in, accounts, OAuth2 clients, signing keys and consents.

Kept apart from models.py (which other domains extend) so that each domain's
tables are easy to find; both share ``models.Base`` and one Alembic history.
No health content here: patient ids, user and client ids, scopes, hashes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carevault_api.models import Base


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A person. ``roles`` is a space-separated list of role names."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant", "username", name="uq_users_tenant_username"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[str] = mapped_column(String(400))
    # RFC 6238 shared secret, sealed (carevault_api.secrets), and the last time step accepted (a code is used once).
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecoveryCode(Base):
    """One-time recovery codes, stored as SHA-256 of a 128-bit random code."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserPatient(Base):
    """Which patient records a user acts for: their own (``self``) or as a representative."""

    __tablename__ = "user_patients"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    relation: Mapped[str] = mapped_column(String(32))


class OAuthClient(Base):
    """A registered client: ``backend`` (clinic software, private_key_jwt) or ``app``
    (public mobile app: authorization code + PKCE + DPoP)."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    jwks: Mapped[str | None] = mapped_column(Text)
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    redirect_uris: Mapped[str] = mapped_column(Text, default="[]")
    scopes: Mapped[str] = mapped_column(Text)
    roles: Mapped[str] = mapped_column(String(400), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """api's token-signing keys: ``next`` (published, not yet signing), ``current``
    (signing), ``retired`` (published until its tokens expired, then dropped)."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_jwk: Mapped[str] = mapped_column(Text)  # sealed (carevault_api.secrets)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    second_factor: Mapped[bool] = mapped_column(Boolean)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class RefreshToken(Base):
    """Refresh tokens, rotated on each use. Every token of one sign-in shares a
    ``family_id``; presenting a used one revokes the family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    second_factor: Mapped[bool] = mapped_column(Boolean)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class UsedMarker(Base):
    """One-time markers (assertion jti, revoked access-token ids) when no Redis is configured."""

    __tablename__ = "used_markers"
    __table_args__ = (Index("ix_used_markers_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsentRecord(Base):
    """A patient's consent to a grantee (user or client), served as FHIR Consent.

    ``resource_types`` and ``actions`` are space-separated (``*`` = every type;
    actions ``read``/``write``)."""

    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_grantee", "grantee_id", "patient_id"),
        Index("ix_consents_patient", "tenant", "patient_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    grantee_kind: Mapped[str] = mapped_column(String(16))
    grantee_id: Mapped[str] = mapped_column(String(64))
    grantee_tenant: Mapped[str] = mapped_column(String(64))
    resource_types: Mapped[str] = mapped_column(Text)
    actions: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    legal_basis: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebAuthnCredential(Base):
    """A WebAuthn public-key credential (a security key or a platform authenticator)
    registered by a user as a second factor. ``credential_hash`` is SHA-256 of the
    credential id, for lookup; ``public_key`` the COSE key (base64url), public by nature;
    ``sign_count`` the last signature counter seen (a counter that does not move
    forward betrays a cloned authenticator)."""

    __tablename__ = "webauthn_credentials"
    __table_args__ = (
        UniqueConstraint("credential_hash", name="uq_webauthn_credentials_credential_hash"),
        Index("ix_webauthn_credentials_user", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential_hash: Mapped[str] = mapped_column(String(64))
    credential_id: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    aaguid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebAuthnChallenge(Base):
    """An outstanding WebAuthn challenge (SHA-256 of it), used once: ``register`` (bound
    to the user registering) or ``signin`` (bound to no one: credentials are discoverable)."""

    __tablename__ = "webauthn_challenges"
    __table_args__ = (Index("ix_webauthn_challenges_expires_at", "expires_at"),)

    challenge_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
