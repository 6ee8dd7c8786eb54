"""Sign-in, token, administrative and consent events (docs/audit.md), through the
gateway: each act leaves exactly the documented events, with its outcome and who
acted, and nothing secret (no password, code, token, assertion or key: the stored
events are scanned for every one the test used). Fail closed: an act whose event
cannot be stored is refused and leaves nothing behind."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pyotp
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.audit_support import verify
from tests.auth.audit_events import Event, events_after, last_seq, raw_events_after
from tests.auth.support import (
    APP_ID,
    admin_session,
    authorize,
    backend_session,
    code_of,
    demo_client,
    make_user,
    refresh,
    seeded_admin,
    totp_now,
    user_session,
)
from tests.auth.test_sign_in import consent_body, patient_with_record
from tests.support import RunningMesh

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Trail:
    """Runs one act and returns the events it left; remembers every secret it saw."""

    def __init__(self, mesh: RunningMesh) -> None:
        self.mesh = mesh
        self.secrets: list[str] = []
        self.start = 0

    async def begin(self) -> None:
        await admin_session(self.mesh)  # signed in before we start counting
        self.start = await last_seq(self.mesh)

    async def events(self, act: Callable[[], Awaitable[Any]]) -> list[Event]:
        seq = await last_seq(self.mesh)
        await act()
        return await events_after(self.mesh, seq)

    def secret(self, *values: str | None) -> None:
        self.secrets += [v for v in values if v]


def one(events: list[Event], name: str, outcome: int) -> Event:
    assert [(e.event, e.outcome) for e in events] == [(name, outcome)], events
    return events[0]


def assertion_for(client_id: str, private_jwk: dict[str, Any], url: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": url, "exp": now + 120, "iat": now, "jti": uuid.uuid4().hex} | overrides
    key = ECKey.import_key(private_jwk)
    return jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key, algorithms=["ES384"])


async def test_sign_in_events(mesh: RunningMesh) -> None:
    trail = Trail(mesh)
    await trail.begin()
    user = await make_user(mesh, "demo", ["practitioner"], totp=True)
    secret = user["enrolment"]["secret"]
    trail.secret(user["password"], secret, *user["enrolment"]["recovery_codes"])

    async def attempt(password: str, otp: str = "", username: str | None = None) -> int:
        answer, client, _, _ = await authorize(mesh, "demo", username or user["username"], password, otp, scope="user/*.cruds")
        await client.aclose()
        return answer.status_code

    # Wrong password: signin.failure naming the account, never what was typed.
    wrong = "not-" + user["password"]
    trail.secret(wrong)
    failure = one(await trail.events(lambda: attempt(wrong)), "signin.failure", 401)
    assert (failure.principal, failure.tenant, failure.client_id) == (user["id"], "demo", APP_ID)
    assert failure.details == {"reason": "bad-password", "failures": 1}
    # Unknown user: no account to name.
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    unknown = one(await trail.events(lambda: attempt(wrong, username=ghost)), "signin.failure", 401)
    assert (unknown.principal, unknown.tenant, unknown.details) == (None, "demo", {"reason": "unknown-user"})
    assert ghost not in await raw_events_after(mesh, trail.start)
    # Wrong TOTP code, then a right one, then the same one again (a code is used once).
    bad_code = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    mfa = one(await trail.events(lambda: attempt(user["password"], bad_code)), "signin.mfa.failure", 401)
    assert mfa.details["reason"] == "totp-wrong" and mfa.principal == user["id"]
    code = totp_now(secret)
    trail.secret(code)
    success = one(await trail.events(lambda: attempt(user["password"], code)), "signin.success", 302)
    assert (success.principal, success.client_id, success.details) == (user["id"], APP_ID, {"factor": "totp"})
    reused = one(await trail.events(lambda: attempt(user["password"], code)), "signin.mfa.failure", 401)
    assert reused.details["reason"] == "totp-reused"
    # A recovery code works once.
    recovery = user["enrolment"]["recovery_codes"][0]
    assert one(await trail.events(lambda: attempt(user["password"], recovery)), "signin.success", 302).details == {
        "factor": "recovery-code"
    }
    # Lockout: the fifth failure in a row locks the account; the next try is refused as locked.
    for failures in range(1, 6):
        event = one(await trail.events(lambda: attempt(wrong)), "signin.failure", 401)
        assert event.details["failures"] == failures
    assert event.details["locked_seconds"] == 30
    # A right second factor (an unused recovery code: a fresh TOTP code could mean waiting
    # out the 30 s step, and the lock with it) is refused all the same.
    unused_recovery = user["enrolment"]["recovery_codes"][1]
    locked = one(await trail.events(lambda: attempt(user["password"], unused_recovery)), "signin.failure", 429)
    assert locked.details == {"reason": "locked"}

    assert_nothing_secret(await raw_events_after(mesh, trail.start), trail.secrets)


async def test_token_events(mesh: RunningMesh) -> None:
    trail = Trail(mesh)
    await trail.begin()
    demo = demo_client(mesh)
    trail.secret(demo["private_jwk"]["d"])
    token_url = mesh.layout.gateway_url + "/oauth2/token"

    # client_credentials (authlib, private_key_jwt): token.issued, the clinic acting.
    sessions: list[Any] = []
    issued = one(
        await trail.events(lambda: _append(sessions, backend_session(mesh, demo["client_id"], demo["private_jwk"]))), "token.issued", 200
    )
    assert (issued.principal, issued.client_id, issued.tenant) == (demo["client_id"], demo["client_id"], "demo")
    assert issued.details == {"grant_type": "client_credentials", "scope": "system/*.cruds", "dpop_bound": False}
    trail.secret(sessions[-1].token)

    # A replayed client assertion, and one signed by another key: token.refused with the reason.
    form = {"grant_type": "client_credentials", "scope": "system/Observation.rs", "client_assertion_type": ASSERTION_TYPE}
    assertion = assertion_for(demo["client_id"], demo["private_jwk"], token_url)
    trail.secret(assertion)
    async with mesh.client() as http:

        async def post(data: dict[str, str]) -> httpx.Response:
            return await http.post("/oauth2/token", data=data)

        one(await trail.events(lambda: post(form | {"client_assertion": assertion})), "token.issued", 200)
        replayed = one(await trail.events(lambda: post(form | {"client_assertion": assertion})), "token.refused", 401)
        assert replayed.client_id == demo["client_id"] and replayed.tenant == "demo"
        assert replayed.details == {"grant_type": "client_credentials", "error": "invalid_client", "reason": "assertion-replayed"}
        forged = assertion_for(
            demo["client_id"], ECKey.generate_key("P-384", parameters={"kid": "forged"}).as_dict(private=True), token_url
        )
        bad = one(await trail.events(lambda: post(form | {"client_assertion": forged})), "token.refused", 401)
        assert bad.details["reason"] == "assertion-signature"

    # Authorization code + PKCE: signin.success then token.issued (DPoP-bound); refresh; a reused
    # refresh token revokes the family; a bad PKCE verifier is refused.
    user = await make_user(mesh, "demo", ["patient"])
    trail.secret(user["password"])
    events = await trail.events(lambda: _append(sessions, user_session(mesh, "demo", user["username"], user["password"])))
    assert [(e.event, e.outcome) for e in events] == [("signin.success", 302), ("token.issued", 200)]
    assert events[1].principal == user["id"] and events[1].client_id == APP_ID
    assert events[1].details == {"grant_type": "authorization_code", "scope": "offline_access patient/*.cruds", "dpop_bound": True}
    session = sessions[-1]
    first_refresh = session.refresh_token
    trail.secret(session.token, first_refresh)
    rotated = await refresh(session)
    trail.secret(rotated.json()["refresh_token"], rotated.json()["access_token"])
    reused = one(await trail.events(lambda: refresh(session, first_refresh)), "token.refused", 400)
    assert reused.principal == user["id"]
    assert reused.details == {
        "grant_type": "refresh_token",
        "family_revoked": True,
        "error": "invalid_grant",
        "reason": "refresh-token-reused",
    }

    answer, client, _verifier, dpop = await authorize(mesh, "demo", user["username"], user["password"])
    code = code_of(answer.headers["location"])
    trail.secret(code)
    async with mesh.client() as http:
        wrong_pkce = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client.redirect_uri,
            "client_id": APP_ID,
            "code_verifier": "x" * 50,
        }
        pkce = one(
            await trail.events(lambda: http.post("/oauth2/token", data=wrong_pkce, headers={"dpop": dpop.proof("POST", token_url)})),
            "token.refused",
            400,
        )
    await client.aclose()
    assert pkce.details["reason"] == "pkce-failed" and pkce.principal == user["id"]

    # Revocation (RFC 7009): token.revoked, with what went.
    fresh = await user_session(mesh, "demo", user["username"], user["password"])
    trail.secret(fresh.token, fresh.refresh_token)
    async with mesh.client() as http:
        revoke = {"token": fresh.refresh_token or "", "client_id": APP_ID}
        revoked = one(await trail.events(lambda: http.post("/oauth2/revoke", data=revoke)), "token.revoked", 200)
    assert revoked.principal == user["id"] and revoked.details == {"revoked": "refresh-family"}

    assert_nothing_secret(await raw_events_after(mesh, trail.start), trail.secrets)


async def test_administrative_and_consent_events(mesh: RunningMesh) -> None:
    trail = Trail(mesh)
    await trail.begin()
    admin = await admin_session(mesh)
    admin_id = _subject(admin.token)
    password = "pw-" + uuid.uuid4().hex
    trail.secret(password, admin.token)

    body = {"tenant": "demo", "username": f"x-{uuid.uuid4().hex[:8]}", "password": password, "roles": ["patient"]}
    created_holder: list[httpx.Response] = []
    created = one(
        await trail.events(lambda: _append(created_holder, admin.request("POST", "/admin/users", json=body))), "admin.user.create", 201
    )
    user_id = created_holder[-1].json()["id"]
    assert (created.principal, created.tenant) == (admin_id, "demo")
    assert created.details == {"target_user": user_id, "target_tenant": "demo", "roles": ["patient"], "totp_enrolled": False}

    roles = await trail.events(lambda: admin.request("PUT", f"/admin/users/{user_id}/roles", json={"roles": ["practitioner"]}))
    assert [(e.event, e.details["roles"]) for e in roles] == [("admin.role.grant", ["practitioner"]), ("admin.role.revoke", ["patient"])]
    same = one(
        await trail.events(lambda: admin.request("PUT", f"/admin/users/{user_id}/roles", json={"roles": ["practitioner"]})),
        "admin.user.update",
        200,
    )
    assert same.details["roles"] == "unchanged"

    reset_holder: list[httpx.Response] = []
    reset = one(
        await trail.events(lambda: _append(reset_holder, admin.request("POST", f"/admin/users/{user_id}/totp"))), "admin.mfa.reset", 200
    )
    enrolment = reset_holder[-1].json()["enrolment"]
    trail.secret(enrolment["secret"], *enrolment["recovery_codes"])
    assert reset.details == {"target_user": user_id, "target_tenant": "demo", "factor": "totp"}

    await admin.request("PUT", f"/admin/users/{user_id}/roles", json={"roles": ["patient"]})
    link = one(
        await trail.events(
            lambda: admin.request("POST", f"/admin/users/{user_id}/patients", json={"patient_id": "p-linked", "relation": "representative"})
        ),
        "admin.user.patient-link",
        204,
    )
    assert link.patient is not None and link.patient != "p-linked" and link.details["relation"] == "representative"

    public = ECKey.generate_key("P-384", parameters={"kid": "k1"})
    client_body = {
        "tenant": "demo",
        "name": "clinic",
        "kind": "backend",
        "jwks": {"keys": [public.as_dict(private=False)]},
        "scopes": "system/*.rs",
    }
    trail.secret(public.as_dict(private=True)["d"])
    client_holder: list[httpx.Response] = []
    new_client = one(
        await trail.events(lambda: _append(client_holder, admin.request("POST", "/admin/clients", json=client_body))),
        "admin.client.create",
        201,
    )
    client_id = client_holder[-1].json()["client_id"]
    assert new_client.details == {"target_client": client_id, "target_tenant": "demo", "kind": "backend", "scope": "system/*.rs"}
    disabled = one(await trail.events(lambda: admin.request("POST", f"/admin/clients/{client_id}/disable")), "admin.client.disable", 204)
    assert disabled.details == {"target_client": client_id, "target_tenant": "demo"}

    # Consent granted and withdrawn by the patient: the Consent, the patient's pseudonym, the legal basis.
    patient, patient_id, key, _obs = await patient_with_record(mesh)
    trail.secret(key, patient.token)
    demo = demo_client(mesh)
    granted_holder: list[httpx.Response] = []
    granted = one(
        await trail.events(
            lambda: _append(granted_holder, patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, demo["client_id"])))
        ),
        "admin.consent.grant",
        201,
    )
    consent_id = granted_holder[-1].json()["id"]
    assert (granted.resource_type, granted.resource_id, granted.legal_basis) == ("Consent", consent_id, "art9-2-h")
    assert granted.patient is not None and patient_id not in (granted.patient or "")
    assert granted.details == {"grantee_kind": "client", "grantee": demo["client_id"], "purpose": "TREAT", "resource_types": ["*"]}
    withdrawn = one(await trail.events(lambda: patient.request("DELETE", f"/fhir/Consent/{consent_id}")), "admin.consent.revoke", 204)
    assert (withdrawn.resource_id, withdrawn.patient) == (consent_id, granted.patient)

    assert_nothing_secret(await raw_events_after(mesh, trail.start), trail.secrets)


async def _rename(mesh: RunningMesh, old: str, new: str) -> None:
    await mesh.db_execute("api", f"ALTER TABLE {old} RENAME TO {new}")


async def test_an_act_whose_event_cannot_be_stored_is_refused_and_undone(mesh: RunningMesh) -> None:
    admin = await admin_session(mesh)
    creds = seeded_admin(mesh)
    patient, patient_id, _key, _obs = await patient_with_record(mesh)
    demo = demo_client(mesh)
    username = f"failclosed-{uuid.uuid4().hex[:8]}"
    count_codes = "SELECT count(*) FROM authorization_codes"
    count_consents = "SELECT count(*) FROM consents WHERE patient_id = $1"
    codes_before = await mesh.db_execute("api", count_codes)
    consents_before = await mesh.db_execute("api", count_consents, patient_id)
    await _rename(mesh, "audit_events", "audit_events_away")
    try:
        created = await admin.request("POST", "/admin/users", json={"username": username, "password": "p" * 16, "roles": ["patient"]})
        assert created.status_code == 503, created.text
        assert created.json()["type"].endswith("/audit-unavailable")
        answer, client, _, _ = await authorize(
            mesh, creds["organisation"], creds["username"], creds["password"], totp_now(creds["TOTP secret"]), "user/*.cruds"
        )
        await client.aclose()
        assert answer.status_code == 503 and "location" not in answer.headers
        token_url = mesh.layout.gateway_url + "/oauth2/token"
        form = {
            "grant_type": "client_credentials",
            "scope": "system/Observation.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion_for(demo["client_id"], demo["private_jwk"], token_url),
        }
        async with mesh.client() as http:
            token = await http.post("/oauth2/token", data=form)
        assert token.status_code == 503 and "access_token" not in token.text
        consent = await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, demo["client_id"]))
        assert consent.status_code == 503, consent.text
    finally:
        await _rename(mesh, "audit_events_away", "audit_events")
    assert await mesh.db_execute("api", "SELECT id FROM users WHERE username = $1", username) == []
    assert await mesh.db_execute("api", count_codes) == codes_before
    assert await mesh.db_execute("api", count_consents, patient_id) == consents_before
    assert verify(mesh)["ok"]


def assert_nothing_secret(stored: str, secrets: list[str]) -> None:
    assert stored, "no events were stored"
    for value in secrets:
        assert value not in stored, f"a secret ({len(value)} characters) was found in the audit trail"


async def _append(holder: list[Any], awaitable: Awaitable[Any]) -> Any:
    value = await awaitable
    holder.append(value)
    return value


def _subject(token: str) -> str:
    import orjson

    from tests.auth.soft_authenticator import unb64url

    return str(orjson.loads(unb64url(token.split(".")[1]))["sub"])
