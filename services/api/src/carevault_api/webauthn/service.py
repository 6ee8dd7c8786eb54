"""WebAuthn (py_webauthn) as an optional second factor, user verification required.

- **Registration**: a signed-in user asks for creation options (a challenge bound to
  them, two minutes, used once), their authenticator makes a credential (attestation
  ``none``: carevault does not vet authenticator models), and the credential's public
  key and signature counter are stored. A discoverable credential is asked for
  (``residentKey: required``), so that sign-in needs no list of a user's credentials.
- **Sign-in**: anyone may ask for request options (a challenge bound to no one: the
  sign-in page must not tell whether an account has a security key). The assertion is
  sent with the password in place of a TOTP code; it must be by a credential of that
  account, over an unused challenge of ours, from an allowed origin, for our RP id,
  with the user-verified flag, and with a signature counter that moved forward (a
  counter that did not betrays a cloned authenticator, or a replay); the new counter
  is stored only if no other sign-in advanced it meanwhile.
- **Removal** needs a session that passed a second factor.

Challenges live in api's database (every replica sees them) and are deleted when
used, whatever the outcome.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_authentication_credential_json, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from carevault_api.models_identity import User, WebAuthnChallenge, WebAuthnCredential
from carevault_api.webauthn import repository
from carevault_common.errors import NotFound, UnprocessableEntity

REGISTER, SIGNIN = "register", "signin"
CHALLENGE_SECONDS = 120
MAX_CREDENTIALS = 10
MAX_ASSERTION_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class RelyingParty:
    rp_id: str
    origins: tuple[str, ...]
    name: str


class WebAuthnRefused(Exception):
    """An assertion that does not pass; ``reason`` is a code for the audit trail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _reason(exc: Exception) -> str:
    """A stable code for the audit trail from py_webauthn's message."""
    text = str(exc).lower()
    for needle, reason in (
        ("user verification", "webauthn-uv-missing"),
        ("origin", "webauthn-origin"),
        ("rp id", "webauthn-rp-id"),
        ("sign count", "webauthn-sign-count"),
        ("signature", "webauthn-signature"),
        ("not present", "webauthn-up-missing"),
    ):
        if needle in text:
            return reason
    return "webauthn-invalid"


async def _new_challenge(session: AsyncSession, purpose: str, user_id: str | None) -> bytes:
    challenge = secrets.token_bytes(32)
    now = datetime.now(UTC)
    await repository.prune_challenges(session, now)
    await repository.add(
        session,
        WebAuthnChallenge(
            challenge_hash=_digest(challenge), purpose=purpose, user_id=user_id, expires_at=now + timedelta(seconds=CHALLENGE_SECONDS)
        ),
    )
    return challenge


def _client_challenge(client_data_b64: object) -> bytes:
    if not isinstance(client_data_b64, str):
        raise ValueError("clientDataJSON missing")
    return parse_client_data_json(base64url_to_bytes(client_data_b64)).challenge


async def registration_options(session: AsyncSession, rp: RelyingParty, user: User) -> dict[str, Any]:
    existing = await repository.credentials_of(session, user.id)
    if len(existing) >= MAX_CREDENTIALS:
        raise UnprocessableEntity(f"At most {MAX_CREDENTIALS} security keys per account; remove one first.")
    challenge = await _new_challenge(session, REGISTER, user.id)
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=user.id.encode(),
        user_name=f"{user.username}@{user.tenant}",
        challenge=challenge,
        timeout=CHALLENGE_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c.credential_id)) for c in existing],
    )
    document: dict[str, Any] = orjson.loads(options_to_json(options))
    return document


async def register(session: AsyncSession, rp: RelyingParty, user: User, credential: dict[str, Any], name: str) -> WebAuthnCredential:
    """Verify a new credential (422 if it does not pass) and store it."""
    try:
        response = credential.get("response")
        challenge = _client_challenge(response.get("clientDataJSON") if isinstance(response, dict) else None)
    except (ValueError, WebAuthnException, TypeError):
        raise UnprocessableEntity("The credential is not a WebAuthn registration response.") from None
    if not await repository.take_challenge(session, _digest(challenge), REGISTER, user.id, datetime.now(UTC)):
        raise UnprocessableEntity("Unknown, used or expired challenge: ask for new options.")
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise UnprocessableEntity(f"The credential was refused ({_reason(exc)}).") from None
    credential_hash = _digest(verified.credential_id)
    if await repository.by_hash(session, credential_hash) is not None:
        raise UnprocessableEntity("This credential is already registered.")
    stored = WebAuthnCredential(
        id=str(uuid.uuid4()),
        credential_hash=credential_hash,
        credential_id=bytes_to_base64url(verified.credential_id),
        user_id=user.id,
        tenant=user.tenant,
        name=name,
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        created_at=datetime.now(UTC),
        last_used_at=None,
    )
    await repository.add(session, stored)
    return stored


async def signin_options(session: AsyncSession, rp: RelyingParty) -> dict[str, Any]:
    challenge = await _new_challenge(session, SIGNIN, None)
    options = generate_authentication_options(
        rp_id=rp.rp_id, challenge=challenge, timeout=CHALLENGE_SECONDS * 1000, user_verification=UserVerificationRequirement.REQUIRED
    )
    document: dict[str, Any] = orjson.loads(options_to_json(options))
    return document


async def check_assertion(session: AsyncSession, rp: RelyingParty, user: User, assertion: str) -> None:
    """Accept an assertion as the second factor of ``user``, or raise :class:`WebAuthnRefused`."""
    if len(assertion) > MAX_ASSERTION_BYTES:
        raise WebAuthnRefused("webauthn-malformed")
    try:
        parsed = parse_authentication_credential_json(assertion)
        challenge = parse_client_data_json(parsed.response.client_data_json).challenge
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise WebAuthnRefused("webauthn-malformed") from None
    credential = await repository.by_hash(session, _digest(parsed.raw_id))
    if credential is None or credential.user_id != user.id:
        raise WebAuthnRefused("webauthn-unknown-credential")
    if parsed.response.user_handle is not None and parsed.response.user_handle != user.id.encode():
        raise WebAuthnRefused("webauthn-unknown-credential")
    now = datetime.now(UTC)
    if not await repository.take_challenge(session, _digest(challenge), SIGNIN, None, now):
        raise WebAuthnRefused("webauthn-challenge")
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=base64url_to_bytes(credential.public_key),
            credential_current_sign_count=credential.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise WebAuthnRefused(_reason(exc)) from None
    if not await repository.advance_sign_count(session, credential, verified.new_sign_count, now):
        raise WebAuthnRefused("webauthn-sign-count")


async def list_credentials(session: AsyncSession, user_id: str) -> list[WebAuthnCredential]:
    return await repository.credentials_of(session, user_id)


async def remove(session: AsyncSession, user_id: str, credential_id: str) -> None:
    if not await repository.remove(session, user_id, credential_id):
        raise NotFound("No such security key.")
