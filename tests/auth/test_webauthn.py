"""WebAuthn as a second factor, end to end through the gateway, with a software
authenticator (tests/auth/soft_authenticator.py) standing in for a security key:
registration, sign-in in place of a TOTP code, the refusals (no user verification,
another origin or RP id, a replayed assertion, a cloned authenticator), an
administrator acting after a WebAuthn sign-in, and removal (second factor needed)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from tests.auth.audit_events import Event, events_after, last_seq
from tests.auth.soft_authenticator import SoftAuthenticator
from tests.auth.support import Session, authorize, make_user, totp_now, user_session
from tests.support import RunningMesh


def soft_key(mesh: RunningMesh) -> SoftAuthenticator:
    gateway = mesh.layout.gateway_url
    return SoftAuthenticator(origin=gateway, rp_id=urlsplit(gateway).hostname or "")


async def register(session: Session, key: SoftAuthenticator, **create: Any) -> tuple[int, dict[str, Any]]:
    options = await session.request("POST", "/account/webauthn/registration/options")
    assert options.status_code == 200, options.text
    document = options.json()
    assert document["authenticatorSelection"]["userVerification"] == "required"
    answer = await session.request(
        "POST", "/account/webauthn/registration", json={"credential": key.create(document, **create), "name": "test key"}
    )
    return answer.status_code, answer.json()


async def signin_options(mesh: RunningMesh) -> dict[str, Any]:
    async with mesh.client() as http:
        answer = await http.post("/oauth2/webauthn/options")
    assert answer.status_code == 200, answer.text
    options: dict[str, Any] = answer.json()
    assert options["userVerification"] == "required"
    return options


async def sign_in_with_key(mesh: RunningMesh, user: dict[str, Any], assertion: str, scope: str = "patient/*.cruds") -> int:
    """The status of the authorize form submitted with an assertion (302: signed in)."""
    answer, client, _, _ = await authorize(mesh, "demo", user["username"], user["password"], scope=scope, webauthn=assertion)
    await client.aclose()
    return answer.status_code


def mfa_failures(events: list[Event]) -> list[str]:
    return [str(e.details.get("reason")) for e in events if e.event == "signin.mfa.failure"]


async def test_webauthn_registration_and_sign_in_refusals(mesh: RunningMesh) -> None:
    user = await make_user(mesh, "demo", ["patient"])
    first = await user_session(mesh, "demo", user["username"], user["password"])
    key = soft_key(mesh)

    # Registration: user verification is required, and the origin must be ours.
    status, body = await register(first, key, user_verified=False)
    assert status == 422 and "webauthn-uv-missing" in body["detail"], body
    status, body = await register(first, soft_key(mesh), origin="https://evil.example")
    assert status == 422 and "webauthn-origin" in body["detail"], body
    seq = await last_seq(mesh)
    status, body = await register(first, key)
    assert status == 201, body
    registered = await events_after(mesh, seq)
    assert [(e.event, e.outcome, e.principal) for e in registered] == [("account.webauthn.register", 201, user["id"])]
    listed = await first.request("GET", "/account/webauthn")
    assert [c["id"] for c in listed.json()] == [body["id"]]

    # From now on this account needs its second factor: the password alone is refused.
    assert await sign_in_with_key(mesh, user, "") == 401

    # Signed in with the key in place of a TOTP code: the token says a second factor passed.
    session = await user_session(mesh, "demo", user["username"], user["password"], webauthn=key.get(await signin_options(mesh)))
    claims = orjson.loads(_segment(session.token))
    assert claims["amr"] == ["pwd", "mfa"]

    seq = await last_seq(mesh)
    # No user verification (UV flag clear): refused.
    assert await sign_in_with_key(mesh, user, key.get(await signin_options(mesh), user_verified=False)) == 401
    # Made for another origin, or another RP id: refused.
    assert await sign_in_with_key(mesh, user, key.get(await signin_options(mesh), origin="https://evil.example")) == 401
    assert await sign_in_with_key(mesh, user, key.get(await signin_options(mesh), rp_id="evil.example")) == 401
    refused = await events_after(mesh, seq)
    assert mfa_failures(refused) == ["webauthn-uv-missing", "webauthn-origin", "webauthn-rp-id"]
    # A good one in between resets the failure count (five failures lock the account).
    good = key.get(await signin_options(mesh))
    assert await sign_in_with_key(mesh, user, good) == 302

    seq = await last_seq(mesh)
    # The same assertion again (replayed): its challenge was used.
    assert await sign_in_with_key(mesh, user, good) == 401
    # A clone: a valid signature over a fresh challenge, but the counter it was copied with.
    assert await sign_in_with_key(mesh, user, key.get(await signin_options(mesh), count=key.sign_count)) == 401
    # A credential of another account is no second factor for this one.
    other = await make_user(mesh, "demo", ["patient"])
    other_session = await user_session(mesh, "demo", other["username"], other["password"])
    stranger = soft_key(mesh)
    assert (await register(other_session, stranger))[0] == 201
    assert await sign_in_with_key(mesh, user, stranger.get(await signin_options(mesh))) == 401
    refused = await events_after(mesh, seq)
    assert mfa_failures(refused) == ["webauthn-challenge", "webauthn-sign-count", "webauthn-unknown-credential"]
    assert all(e.principal == user["id"] and e.outcome == 401 for e in refused if e.event == "signin.mfa.failure")
    # The real authenticator, whose counter moves on, still works.
    assert await sign_in_with_key(mesh, user, key.get(await signin_options(mesh))) == 302


async def test_an_administrator_acts_after_webauthn_and_removal_needs_a_second_factor(mesh: RunningMesh) -> None:
    admin = await make_user(mesh, "demo", ["tenant-admin"], totp=True)
    secret = admin["enrolment"]["secret"]
    with_totp = await user_session(mesh, "demo", admin["username"], admin["password"], totp_now(secret), scope="user/*.cruds")
    key = soft_key(mesh)
    # An account with a second factor adds another only from a session that passed one.
    assert (await register(with_totp, key))[0] == 201

    # Signed in with password + WebAuthn (no TOTP code), the administrator acts.
    session = await user_session(
        mesh, "demo", admin["username"], admin["password"], scope="user/*.cruds", webauthn=key.get(await signin_options(mesh))
    )
    users = await session.request("GET", "/admin/users")
    assert users.status_code == 200, users.text
    credential = (await session.request("GET", "/account/webauthn")).json()[0]["id"]

    # Removal: a patient session without a second factor cannot; with one, it can.
    patient = await make_user(mesh, "demo", ["patient"])
    password_only = await user_session(mesh, "demo", patient["username"], patient["password"])
    patient_key = soft_key(mesh)
    assert (await register(password_only, patient_key))[0] == 201
    patient_credential = (await password_only.request("GET", "/account/webauthn")).json()[0]["id"]
    refused = await password_only.request("DELETE", f"/account/webauthn/{patient_credential}")
    assert refused.status_code == 403, refused.text
    # Someone else's credential is not found, even with a second factor.
    assert (await session.request("DELETE", f"/account/webauthn/{patient_credential}")).status_code == 404

    seq = await last_seq(mesh)
    removed = await session.request("DELETE", f"/account/webauthn/{credential}")
    assert removed.status_code == 204, removed.text
    assert [(e.event, e.outcome, e.principal) for e in await events_after(mesh, seq)] == [("account.webauthn.remove", 204, admin["id"])]
    # The removed key no longer signs in.
    assert await sign_in_with_key(mesh, admin, key.get(await signin_options(mesh)), scope="user/*.cruds") == 401


def _segment(token: str) -> bytes:
    from tests.auth.soft_authenticator import unb64url

    return unb64url(token.split(".")[1])
