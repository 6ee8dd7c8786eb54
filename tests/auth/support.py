"""Sign-in helpers for the cross-service tests: DPoP keys, the authorize form
driven as a browser would, authlib as the OAuth2 client library, and the
people and clients of the authorization tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pyotp
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.support import RunningMesh, remember_secret

APP_ID = "demo-app"
APP_REDIRECT = "http://127.0.0.1:8765/callback"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DpopKey:
    """A client's proof-of-possession key (RFC 9449)."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256")

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def proof(self, method: str, url: str, token: str | None = None, *, iat: int | None = None, jti: str | None = None) -> str:
        claims: dict[str, Any] = {"jti": jti or uuid.uuid4().hex, "htm": method, "htu": url, "iat": iat or int(time.time())}
        if token is not None:
            claims["ath"] = b64url(hashlib.sha256(token.encode()).digest())
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        return jwt.encode(header, claims, self.key, algorithms=["ES256"])


@dataclass
class Session:
    """An access token, and the DPoP key it is bound to (if any)."""

    mesh: RunningMesh
    token: str
    dpop: DpopKey | None = None
    refresh_token: str | None = None
    patient: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, method: str, path: str) -> dict[str, str]:
        if self.dpop is None:
            return {"authorization": f"Bearer {self.token}"}
        url = self.mesh.layout.gateway_url + path.split("?")[0]
        return {"authorization": f"DPoP {self.token}", "dpop": self.dpop.proof(method, url, self.token)}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(method, path) | {"accept": "application/fhir+json"} | kwargs.pop("headers", {})
        async with self.mesh.client() as client:
            return await client.request(method, path, headers=headers, **kwargs)


def seeded_admin(mesh: RunningMesh) -> dict[str, str]:
    found = dict(re.findall(r"^\s+(organisation|username|password|TOTP secret): (\S+)$", mesh.seed_output, re.M))
    assert found, "the demo administrator's credentials were not printed by the seed step"
    remember_secret(found["TOTP secret"].encode())  # sealed at rest: the scan after the suite looks for it
    return found


def demo_client(mesh: RunningMesh) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((mesh.state_dir / "demo-client.json").read_bytes())
    return document


def totp_now(secret: str) -> str:
    """A code for a time step not used yet (a code is accepted once per step)."""
    totp = pyotp.TOTP(secret)
    used = _USED_STEPS.setdefault(secret, set())
    while True:
        step = int(time.time()) // 30
        if step not in used:
            used.add(step)
            return totp.at(step * 30)
        time.sleep(max(0.05, 30 - time.time() % 30 + 0.05))


_USED_STEPS: dict[str, set[int]] = {}


async def backend_session(mesh: RunningMesh, client_id: str, private_jwk: dict[str, Any], scope: str = "system/*.cruds") -> Session:
    """client_credentials with private_key_jwt, through authlib."""
    key = ECKey.import_key(private_jwk)
    token_url = mesh.layout.gateway_url + "/oauth2/token"
    async with AsyncOAuth2Client(
        client_id=client_id,
        client_secret=key,
        # SMART Backend Services: an assertion lives at most five minutes (authlib's default is an hour).
        token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="ES384", claims={"exp": int(time.time()) + 240}),
        verify=mesh.ssl_context(),
    ) as client:
        token = await client.fetch_token(token_url, grant_type="client_credentials", scope=scope)
    return Session(mesh, token["access_token"])


async def authorize(
    mesh: RunningMesh,
    tenant: str,
    username: str,
    password: str,
    otp: str = "",
    scope: str = "patient/*.cruds offline_access",
    webauthn: str = "",
    before_submit: Callable[[], Awaitable[object]] | None = None,
) -> tuple[httpx.Response, AsyncOAuth2Client, str, DpopKey]:
    """The authorize step as a browser does it: load the form, submit it (``webauthn``:
    an assertion, as an app fills that field; ``before_submit``: awaited between the
    two). Returns the redirect response, the authlib client and the PKCE verifier."""
    gateway = mesh.layout.gateway_url
    verifier = secrets.token_urlsafe(48)
    client = AsyncOAuth2Client(
        client_id=APP_ID, redirect_uri=APP_REDIRECT, scope=scope, code_challenge_method="S256", verify=mesh.ssl_context()
    )
    url, _state = client.create_authorization_url(gateway + "/oauth2/authorize", code_verifier=verifier, aud=gateway + "/fhir")
    async with mesh.client() as http:
        page = await http.get(url.removeprefix(gateway))
        assert page.status_code == 200, page.text
        fields = {unescape(k): unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
        form = fields | {"tenant": tenant, "username": username, "password": password, "otp": otp, "decision": "allow"}
        if webauthn:
            form["webauthn"] = webauthn
        if before_submit is not None:
            await before_submit()
        answer = await http.post("/oauth2/authorize", data=form)
    return answer, client, verifier, DpopKey()


async def user_session(
    mesh: RunningMesh,
    tenant: str,
    username: str,
    password: str,
    otp: str = "",
    scope: str = "patient/*.cruds offline_access",
    webauthn: str = "",
) -> Session:
    """Authorization code + PKCE (authlib) with a DPoP-bound token."""
    answer, client, verifier, dpop = await authorize(mesh, tenant, username, password, otp, scope, webauthn)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert "code=" in location, location
    token_url = mesh.layout.gateway_url + "/oauth2/token"
    async with client:
        token = await client.fetch_token(
            token_url, authorization_response=location, code_verifier=verifier, headers={"DPoP": dpop.proof("POST", token_url)}
        )
    assert token["token_type"] == "DPoP"
    return Session(mesh, token["access_token"], dpop, token.get("refresh_token"), token.get("patient"))


async def refresh(session: Session, refresh_token: str | None = None) -> httpx.Response:
    token_url = session.mesh.layout.gateway_url + "/oauth2/token"
    assert session.dpop is not None
    async with session.mesh.client() as http:
        return await http.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token or session.refresh_token or "", "client_id": APP_ID},
            headers={"dpop": session.dpop.proof("POST", token_url)},
        )


def code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


_ADMIN: dict[str, Session] = {}
# One sign-in at a time per mesh: two at once would present the same TOTP code, and
# api refuses a code's second use. Keyed by event loop too (a lock belongs to one).
_ADMIN_LOCKS: dict[tuple[str, int], asyncio.Lock] = {}


async def admin_session(mesh: RunningMesh) -> Session:
    """The seeded administrator, signed in once per mesh with password + TOTP."""
    lock = _ADMIN_LOCKS.setdefault((mesh.backend, id(asyncio.get_running_loop())), asyncio.Lock())
    async with lock:
        cached = _ADMIN.get(mesh.backend)
        if cached is not None and cached.extra.get("expires", 0) > time.time() + 30:
            return cached
        creds = seeded_admin(mesh)
        session = await user_session(
            mesh, creds["organisation"], creds["username"], creds["password"], totp_now(creds["TOTP secret"]), scope="user/*.cruds"
        )
        session.extra["expires"] = time.time() + 280
        _ADMIN[mesh.backend] = session
        return session


async def admin_post(mesh: RunningMesh, path: str, body: dict[str, Any]) -> dict[str, Any]:
    admin = await admin_session(mesh)
    resp = await admin.request("POST", path, json=body)
    assert resp.status_code in (200, 201, 204), resp.text
    return resp.json() if resp.content else {}


def new_client_key() -> tuple[dict[str, Any], dict[str, Any]]:
    key = ECKey.generate_key("P-384", parameters={"kid": uuid.uuid4().hex})
    return key.as_dict(private=False) | {"alg": "ES384"}, key.as_dict(private=True)


async def make_backend_client(mesh: RunningMesh, tenant: str, scopes: str = "system/*.cruds") -> tuple[str, dict[str, Any]]:
    public, private = new_client_key()
    created = await admin_post(
        mesh, "/admin/clients", {"tenant": tenant, "name": "clinic", "kind": "backend", "jwks": {"keys": [public]}, "scopes": scopes}
    )
    return str(created["client_id"]), private


async def make_user(mesh: RunningMesh, tenant: str, roles: list[str], *, totp: bool = False) -> dict[str, Any]:
    username = f"u-{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(16)
    created = await admin_post(
        mesh, "/admin/users", {"tenant": tenant, "username": username, "password": password, "roles": roles, "totp": totp}
    )
    if created.get("enrolment"):
        remember_secret(created["enrolment"]["secret"].encode())  # sealed at rest: the scan after the suite looks for it
    return created | {"username": username, "password": password}


async def ensure_tenant(mesh: RunningMesh, tenant: str) -> None:
    """Tenants other than the demo one are created straight in api's database (no endpoint yet)."""
    from datetime import UTC, datetime

    rows = await mesh.db_execute("api", "SELECT id FROM tenants WHERE id = $1", tenant)
    if not rows:
        now = datetime.now(UTC)
        value: Any = now.isoformat(" ") if mesh.backend == "sqlite" else now
        await mesh.db_execute("api", "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)", tenant, tenant, value)
