"""Sign-in end to end through the gateway, with authlib as the OAuth2 client:
a patient's app (authorization code + PKCE + DPoP), a clinic (client_credentials
with private_key_jwt), consent granted and revoked, and the refusals the issue lists."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from carevault_api.accounts.service import LOCK_AFTER
from tests.auth.support import (
    APP_ID,
    DpopKey,
    Session,
    admin_session,
    authorize,
    backend_session,
    demo_client,
    make_user,
    refresh,
    user_session,
)
from tests.e2e.test_records import observation
from tests.support import RunningMesh, new_patient_key


def consent_body(
    patient_id: str, grantee_id: str, kind: str = "client", *, types: list[str] | None = None, end: str | None = None
) -> dict[str, Any]:
    provision: dict[str, Any] = {
        "type": "permit",
        "actor": [{"reference": {"identifier": {"system": f"https://carevault.dev/fhir/sid/{kind}", "value": grantee_id}}}],
        "action": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]},
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "correct"}]},
        ],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
    }
    if types:
        provision["class"] = [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types]
    if end:
        provision["period"] = {"end": end}
    return {
        "resourceType": "Consent",
        "status": "active",
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"coding": [{"system": "https://carevault.dev/fhir/CodeSystem/gdpr-legal-basis", "code": "art9-2-h"}]},
        "provision": provision,
    }


async def patient_with_record(mesh: RunningMesh, tenant: str = "demo") -> tuple[Session, str, str, str]:
    """A patient user who signed in with the app and created their record and one Observation."""
    user = await make_user(mesh, tenant, ["patient"])
    session = await user_session(mesh, tenant, user["username"], user["password"])
    key = new_patient_key()
    created = await session.request(
        "POST", "/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers={"x-patient-key": key}
    )
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    obs = await session.request("POST", "/fhir/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    assert obs.status_code == 201, obs.text
    return session, patient_id, key, obs.json()["id"]


async def test_patient_app_and_clinic_with_consent(mesh: RunningMesh) -> None:
    patient, patient_id, key, obs_id = await patient_with_record(mesh)
    read = await patient.request("GET", f"/fhir/Observation/{obs_id}", headers={"x-patient-key": key})
    assert read.status_code == 200, read.text
    assert "x-carevault-patient" not in read.headers
    search = await patient.request("GET", f"/fhir/Observation?subject=Patient/{patient_id}", headers={"x-patient-key": key})
    assert search.status_code == 200 and len(search.json()["entry"]) == 1

    demo = demo_client(mesh)
    clinic = await backend_session(mesh, demo["client_id"], demo["private_jwk"])
    refused = await clinic.request("GET", f"/fhir/Observation/{obs_id}", headers={"x-patient-key": key})
    assert refused.status_code == 403, refused.text
    refused = await clinic.request("GET", f"/fhir/Observation?subject=Patient/{patient_id}", headers={"x-patient-key": key})
    assert refused.status_code == 403

    granted = await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, demo["client_id"]))
    assert granted.status_code == 201, granted.text
    consent_id = granted.json()["id"]
    allowed = await clinic.request("GET", f"/fhir/Observation/{obs_id}", headers={"x-patient-key": key})
    assert allowed.status_code == 200, allowed.text
    written = await clinic.request("POST", "/fhir/Observation", json=observation(patient_id), headers={"x-patient-key": key})
    assert written.status_code == 201, written.text
    as_fhir = await clinic.request("GET", f"/fhir/Consent/{consent_id}")
    assert as_fhir.json()["status"] == "active" and as_fhir.json()["resourceType"] == "Consent"

    revoked = await patient.request("DELETE", f"/fhir/Consent/{consent_id}")
    assert revoked.status_code == 204
    again = await clinic.request("GET", f"/fhir/Observation/{obs_id}", headers={"x-patient-key": key})
    assert again.status_code == 403
    assert (await patient.request("GET", f"/fhir/Consent/{consent_id}")).json()["status"] == "inactive"
    # Both are needed: with consent but a wrong key, records refuses too.
    await patient.request("POST", "/fhir/Consent", json=consent_body(patient_id, demo["client_id"]))
    wrong = await clinic.request("GET", f"/fhir/Observation/{obs_id}", headers={"x-patient-key": new_patient_key()})
    assert wrong.status_code in (401, 403)


async def test_replayed_client_assertion_is_refused(mesh: RunningMesh) -> None:
    demo = demo_client(mesh)
    key = ECKey.import_key(demo["private_jwk"])
    url = mesh.layout.gateway_url + "/oauth2/token"
    now = int(time.time())
    claims = {"iss": demo["client_id"], "sub": demo["client_id"], "aud": url, "exp": now + 120, "iat": now, "jti": uuid.uuid4().hex}
    assertion = jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key, algorithms=["ES384"])
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Observation.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    async with mesh.client() as http:
        first = await http.post("/oauth2/token", data=form)
        assert first.status_code == 200, first.text
        second = await http.post("/oauth2/token", data=form)
        assert second.status_code == 401 and second.json()["error"] == "invalid_client"
        long_lived = dict(claims, jti=uuid.uuid4().hex, exp=now + 3600)
        form["client_assertion"] = jwt.encode({"alg": "ES384", "kid": key.kid}, long_lived, key, algorithms=["ES384"])
        assert (await http.post("/oauth2/token", data=form)).status_code == 401


async def test_dpop_refusals(mesh: RunningMesh) -> None:
    patient, _patient_id, key, obs_id = await patient_with_record(mesh)
    path = f"/fhir/Observation/{obs_id}"
    url = mesh.layout.gateway_url + path
    assert patient.dpop is not None
    base = {"x-patient-key": key, "accept": "application/fhir+json"}
    async with mesh.client() as http:
        proof = patient.dpop.proof("GET", url, patient.token)
        ok = await http.get(path, headers=base | {"authorization": f"DPoP {patient.token}", "dpop": proof})
        assert ok.status_code == 200, ok.text
        # the same proof again
        replay = await http.get(path, headers=base | {"authorization": f"DPoP {patient.token}", "dpop": proof})
        assert replay.status_code == 401 and replay.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid-dpop-proof"
        # a proof for another URL, another method, too old, another key
        for bad in (
            patient.dpop.proof("GET", mesh.layout.gateway_url + "/fhir/Patient", patient.token),
            patient.dpop.proof("POST", url, patient.token),
            patient.dpop.proof("GET", url, patient.token, iat=int(time.time()) - 600),
            DpopKey().proof("GET", url, patient.token),
        ):
            resp = await http.get(path, headers=base | {"authorization": f"DPoP {patient.token}", "dpop": bad})
            assert resp.status_code == 401, resp.text
        # the token without its key: as a bearer token, or without a proof
        assert (await http.get(path, headers=base | {"authorization": f"Bearer {patient.token}"})).status_code == 401
        assert (await http.get(path, headers=base | {"authorization": f"DPoP {patient.token}"})).status_code == 401
    # api checks again whatever the gateway checked: called directly with the gateway's own
    # certificate (as a compromised gateway would), a bound token still needs a fresh proof by its key
    import httpx

    async with httpx.AsyncClient(base_url=mesh.layout.url("api"), verify=mesh.ssl_context("gateway"), timeout=10) as direct:
        bound = base | {"authorization": f"DPoP {patient.token}"}
        assert (await direct.get(path, headers=bound)).status_code == 401
        assert (await direct.get(path, headers=base | {"authorization": f"Bearer {patient.token}"})).status_code == 401
        fresh = patient.dpop.proof("GET", url, patient.token)
        assert (await direct.get(path, headers=bound | {"dpop": fresh})).status_code == 200
        assert (await direct.get(path, headers=bound | {"dpop": fresh})).status_code == 401, "a replayed proof"
        other_key = DpopKey().proof("GET", url, patient.token)
        assert (await direct.get(path, headers=bound | {"dpop": other_key})).status_code == 401


async def test_reused_refresh_token_revokes_the_family(mesh: RunningMesh) -> None:
    user = await make_user(mesh, "demo", ["patient"])
    session = await user_session(mesh, "demo", user["username"], user["password"])
    first = session.refresh_token
    rotated = await refresh(session)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["refresh_token"]
    assert second != first
    reused = await refresh(session, first)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # the whole family is revoked: the newest token no longer works either
    after = await refresh(session, second)
    assert after.status_code == 400
    # and a refresh with another DPoP key than the token's is refused
    other = await user_session(mesh, "demo", user["username"], user["password"])
    other.dpop = DpopKey()
    assert (await refresh(other)).status_code == 400


async def test_pkce_is_required_and_checked(mesh: RunningMesh) -> None:
    user = await make_user(mesh, "demo", ["patient"])
    async with mesh.client() as http:
        no_pkce = await http.get(
            "/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": APP_ID,
                "redirect_uri": "http://127.0.0.1:8765/callback",
                "scope": "patient/*.rs",
            },
        )
        assert no_pkce.status_code == 302 and "error=invalid_request" in no_pkce.headers["location"]
        other_uri = await http.get(
            "/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": APP_ID,
                "redirect_uri": "http://127.0.0.1:8765/callback/x",
                "scope": "patient/*.rs",
            },
        )
        assert other_uri.status_code == 400
    answer, _client, _verifier, dpop = await authorize(mesh, "demo", user["username"], user["password"])
    token_url = mesh.layout.gateway_url + "/oauth2/token"
    async with mesh.client() as http:
        code = answer.headers["location"].split("code=")[1].split("&")[0]
        wrong = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": APP_ID,
                "redirect_uri": "http://127.0.0.1:8765/callback",
                "code_verifier": "x" * 50,
            },
            headers={"dpop": dpop.proof("POST", token_url)},
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


async def test_admin_action_needs_a_second_factor(mesh: RunningMesh) -> None:
    admin = await admin_session(mesh)
    staff = await make_user(mesh, "demo", ["practitioner"])
    session = await user_session(mesh, "demo", staff["username"], staff["password"], scope="user/*.rs offline_access")
    body = {"tenant": "demo", "username": f"x-{uuid.uuid4().hex[:8]}", "password": "a-long-password-1", "roles": ["patient"]}
    assert (await session.request("POST", "/admin/users", json=body)).status_code == 403
    # promoted to tenant-admin after signing in with a password only: the refreshed token
    # carries the role but not the second factor, and is refused
    promoted = await admin.request("PUT", f"/admin/users/{staff['id']}/roles", json={"roles": ["practitioner", "tenant-admin"]})
    assert promoted.status_code == 200, promoted.text
    fresh = await refresh(session)
    assert fresh.status_code == 200
    session.token = fresh.json()["access_token"]
    refused = await session.request("POST", "/admin/users", json=body)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/second-factor-required")
    # and such a user can no longer sign in without enrolling a second factor
    answer, *_ = await authorize(mesh, "demo", staff["username"], staff["password"], scope="user/*.rs")
    assert answer.status_code == 401


def _claims(mesh: RunningMesh) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": mesh.layout.gateway_url, "sub": "x", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, "client_id": "x",
        "scope": "system/*.cruds", "tenant": "demo", "kind": "client", "roles": ["clinic-client"],
    }  # fmt: skip


@pytest.mark.parametrize("forgery", ["none", "hs256-with-public-key", "unknown-key"])
async def test_forged_tokens_are_refused(mesh: RunningMesh, forgery: str) -> None:
    import base64

    import orjson

    claims = _claims(mesh)
    async with mesh.client() as http:
        jwks = (await http.get("/oauth2/jwks")).json()
    kid = jwks["keys"][0]["kid"]
    if forgery == "none":
        enc = lambda d: base64.urlsafe_b64encode(orjson.dumps(d)).rstrip(b"=").decode()  # noqa: E731
        token = f"{enc({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{enc(claims)}."
    elif forgery == "hs256-with-public-key":
        secret = OctKey.import_key(orjson.dumps(jwks["keys"][0]))
        token = jwt.encode({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims, secret, algorithms=["HS256"])
    else:
        key = ECKey.generate_key("P-256", parameters={"kid": "not-ours"})
        token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "not-ours"}, claims, key, algorithms=["ES256"])
    async with mesh.client() as http:
        resp = await http.get("/fhir/Organization", headers={"authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.text
    # api refuses it too when called directly by the gateway's identity (zero trust)
    import httpx

    async with httpx.AsyncClient(verify=mesh.ssl_context("gateway"), timeout=10) as direct:
        resp = await direct.get(mesh.layout.url("api") + "/fhir/Organization", headers={"authorization": f"Bearer {token}"})
    assert resp.status_code == 401


async def test_revoked_and_introspected_tokens(mesh: RunningMesh) -> None:
    demo = demo_client(mesh)
    clinic = await backend_session(mesh, demo["client_id"], demo["private_jwk"])
    key = ECKey.import_key(demo["private_jwk"])
    base = mesh.layout.gateway_url

    def assertion(endpoint: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"iss": demo["client_id"], "sub": demo["client_id"], "aud": base + endpoint, "exp": now + 120, "jti": uuid.uuid4().hex}
        signed = jwt.encode({"alg": "ES384", "kid": key.kid}, claims, key, algorithms=["ES384"])
        return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": signed}

    async with mesh.client() as http:
        seen = await http.post("/oauth2/introspect", data={"token": clinic.token} | assertion("/oauth2/introspect"))
        assert seen.status_code == 200 and seen.json()["active"] is True, seen.text
        gone = await http.post("/oauth2/revoke", data={"token": clinic.token} | assertion("/oauth2/revoke"))
        assert gone.status_code == 200
        seen = await http.post("/oauth2/introspect", data={"token": clinic.token} | assertion("/oauth2/introspect"))
        assert seen.json()["active"] is False
    assert (await clinic.request("GET", "/fhir/Organization")).status_code == 401


async def test_totp_secrets_and_signing_keys_are_sealed_at_rest(mesh: RunningMesh) -> None:
    """A copy of api's database yields neither a TOTP secret nor a signing key
    (the scan after the suite also looks for every TOTP secret the tests enrolled)."""
    await admin_session(mesh)
    await make_user(mesh, "demo", ["auditor"])
    secrets = await mesh.db_execute("api", "SELECT totp_secret FROM users WHERE totp_secret IS NOT NULL")
    keys = await mesh.db_execute("api", "SELECT private_jwk FROM signing_keys")
    assert secrets and keys
    for (value,) in secrets + keys:
        assert isinstance(value, str) and value.startswith("cvs1."), "stored unsealed"
        assert '"d"' not in value


async def test_clinic_with_keys_at_a_jwks_url(mesh: RunningMesh) -> None:
    """SMART Backend Services clients may register a JWKS URL instead of a JWKS: api
    fetches it (here a local server, allowed by the dev-only API_JWKS_URI_PRIVATE_NETWORKS)."""
    import orjson
    from aiohttp import web

    from tests.auth.support import admin_post, new_client_key

    public, private = new_client_key()

    async def jwks(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"keys": [public]}), content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/jwks.json"  # type: ignore[union-attr]
    try:
        body = {"tenant": "demo", "name": "clinic", "kind": "backend", "jwks_uri": url, "scopes": "system/Organization.rs"}
        created = await admin_post(mesh, "/admin/clients", body)
        assert created["jwks_uri"] == url
        clinic = await backend_session(mesh, created["client_id"], private, scope="system/Organization.rs")
        assert (await clinic.request("GET", "/fhir/Organization")).status_code == 200
        admin = await admin_session(mesh)
        both = await admin.request("POST", "/admin/clients", json=body | {"jwks": {"keys": [public]}})
        assert both.status_code == 422, both.text
    finally:
        await runner.cleanup()


async def test_guesses_sent_at_once_do_not_escape_the_lockout(mesh: RunningMesh) -> None:
    """The lockout counts every failure however many arrive together: one sign-in per
    account at a time, so at most LOCK_AFTER passwords are checked before the lock,
    the rest are refused as locked unchecked, and the right password then too. The
    forms are all submitted at the same moment, more of them than api's database pool
    has connections (8): none waits forever for one."""
    user = await make_user(mesh, "demo", ["patient"])
    wrong = "not-" + user["password"]
    guesses = 3 * LOCK_AFTER
    all_loaded = asyncio.Barrier(guesses)
    answers = await asyncio.gather(
        *(authorize(mesh, "demo", user["username"], wrong, before_submit=all_loaded.wait) for _ in range(guesses))
    )
    for _, client, _, _ in answers:
        await client.aclose()
    statuses = sorted(answer.status_code for answer, *_ in answers)
    assert statuses == [401] * LOCK_AFTER + [429] * (2 * LOCK_AFTER), statuses
    (failures,) = await mesh.db_execute("api", "SELECT failed_logins FROM users WHERE id = $1", user["id"])
    assert failures[0] == LOCK_AFTER
    right, client, _, _ = await authorize(mesh, "demo", user["username"], user["password"])
    await client.aclose()
    assert right.status_code == 429


async def test_a_dpop_proof_for_a_percent_encoded_path_is_accepted(mesh: RunningMesh) -> None:
    """An app that encodes each path segment (JavaScript's encodeURIComponent turns
    `$everything` into `%24everything`) signs the URL as it sends it; the gateway and
    api see the path decoded, and compare after RFC 3986 normalisation (RFC 9449 §4.3)."""
    patient, patient_id, key, obs_id = await patient_with_record(mesh)
    for path in (f"/fhir/Patient/{patient_id}/%24everything", f"/fhir/Observation/{obs_id.replace('-', '%2D')}"):
        resp = await patient.request("GET", path, headers={"x-patient-key": key})
        assert resp.status_code == 200, (path, resp.text)
