"""The OAuth2 authorization server: grants, codes, refresh-token rotation,
revocation and introspection.

Grants (RFC 6749, with the profiles the health ecosystem uses):
- ``client_credentials`` for clinic software, authenticated with
  ``private_key_jwt`` (:mod:`carevault_api.oauth.client_auth`);
- ``authorization_code`` with PKCE, S256 only and for every client (public or
  confidential), exact redirect-URI match, code usable once for 60 seconds;
- ``refresh_token``: rotated on every use; presenting a used (or revoked) one
  revokes every token of its family (one sign-in).

Access tokens are JWTs signed by api (:mod:`carevault_api.signing`), five
minutes by default, bound to the client's DPoP key (``cnf.jkt``) when the token
request carried a DPoP proof; app clients must send one.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_api.accounts import repository as accounts_repository
from carevault_api.accounts.service import parse_roles
from carevault_api.auth.principal import Kind, Role
from carevault_api.auth.scopes import SmartScope, format_scopes, narrow, parse_scopes
from carevault_api.models_identity import AuthorizationCode, OAuthClient, RefreshToken, User
from carevault_api.oauth import repository
from carevault_api.oauth.client_auth import authenticate_client
from carevault_api.oauth.errors import OAuthError
from carevault_api.oauth.jwks_fetch import JwksFetcher
from carevault_api.oauth.revocation import RevocationList
from carevault_api.signing.service import SigningKeys
from carevault_common.db import session_scope
from carevault_common.jose import (
    DPOP_MAX_AGE_SECONDS,
    InvalidDpopProof,
    InvalidToken,
    VerifiedTokens,
    b64url,
    verify_access_token,
    verify_dpop_proof,
)
from carevault_common.replay import ReplayCache

CODE_TTL_SECONDS = 60
GRANTS = frozenset({"client_credentials", "authorization_code", "refresh_token"})
_CHALLENGE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    issuer: str
    access_token_ttl: int
    refresh_token_ttl: int

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/oauth2/token"

    @property
    def fhir_base(self) -> str:
        return f"{self.issuer}/fhir"


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated ``/oauth2/authorize`` request."""

    client: OAuthClient
    redirect_uri: str
    scopes: list[SmartScope]
    other_scopes: list[str]
    state: str
    code_challenge: str
    dpop_jkt: str | None


@dataclass(slots=True)
class TokenTrace:
    """What a token or revocation request turned out to be, filled in as it is learnt,
    for its audit event (:mod:`carevault_api.oauth.events`): never a token, code,
    assertion or key, only ids and codes."""

    grant: str = ""
    client_id: str | None = None
    tenant: str | None = None
    subject: str | None = None
    scope: str = ""
    bound: bool = False  # the token is DPoP-bound
    family_revoked: bool = False
    revoked: str = ""  # what a revocation revoked: refresh-family, access-token or nothing

    def client(self, client: OAuthClient) -> None:
        self.client_id, self.tenant = client.client_id, client.tenant
        if client.kind == "backend":
            self.subject = client.client_id


class AuthorizeError(Exception):
    """An authorize error that can go back to the client (its redirect URI is trusted)."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str) -> None:
        super().__init__(description)
        self.redirect_uri, self.error, self.description, self.state = redirect_uri, error, description, state


class OAuthService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: SigningKeys,
        settings: OAuthSettings,
        *,
        assertions: ReplayCache,
        revoked: RevocationList,
        dpop_replay: ReplayCache,
        jwks_fetcher: JwksFetcher | None = None,
    ) -> None:
        self.sessions, self.keys, self.settings = sessions, keys, settings
        self.assertions, self.revoked, self.dpop_replay = assertions, revoked, dpop_replay
        self.jwks_fetcher = jwks_fetcher or JwksFetcher()
        # Signatures already verified (pure function of the token and the key set).
        self.verified = VerifiedTokens()

    # -- access tokens --------------------------------------------------------------

    def issue_access_token(
        self,
        *,
        tenant: str,
        subject: str,
        kind: Kind,
        roles: frozenset[Role],
        client_id: str,
        scope: str,
        second_factor: bool,
        patient: str | None,
        jkt: str | None,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": subject,
            "aud": self.settings.fhir_base,
            "iat": now,
            "nbf": now,
            "exp": now + self.settings.access_token_ttl,
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "scope": scope,
            "tenant": tenant,
            "kind": kind.value,
            "roles": sorted(r.value for r in roles),
            # RFC 8176: "mfa" whichever second factor passed (TOTP, a recovery code or WebAuthn).
            "amr": ["pwd", "mfa"] if second_factor else (["pwd"] if kind == Kind.USER else ["pop"]),
        }
        if patient is not None:
            claims["patient"] = patient
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        response: dict[str, Any] = {
            "access_token": self.keys.sign(claims),
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": self.settings.access_token_ttl,
            "scope": scope,
        }
        if patient is not None:
            response["patient"] = patient
        return response

    async def verify_access_token(self, token: str, scheme: str = "Bearer") -> dict[str, Any]:
        """The claims of a token signed by api (do not modify them: they are memoised)."""
        try:
            return verify_access_token(token, self.keys.public_keys, issuer=self.settings.issuer, scheme=scheme, verified=self.verified)
        except InvalidToken:
            await self.keys.maybe_reload()
            return verify_access_token(token, self.keys.public_keys, issuer=self.settings.issuer, scheme=scheme, verified=self.verified)

    async def _dpop_jkt(self, proof: str | None) -> str | None:
        if proof is None:
            return None
        try:
            checked = verify_dpop_proof(proof, method="POST", url=self.settings.token_endpoint)
        except InvalidDpopProof as exc:
            raise OAuthError("invalid_dpop_proof", exc.detail, reason="dpop-invalid") from None
        if not await self.dpop_replay.first_use(f"token:{checked.jti}", DPOP_MAX_AGE_SECONDS * 2):
            raise OAuthError("invalid_dpop_proof", "This DPoP proof was already used.", reason="dpop-replayed")
        return checked.jkt

    # -- the token endpoint -----------------------------------------------------------

    async def token(self, form: Mapping[str, str], dpop_proof: str | None, trace: TokenTrace | None = None) -> dict[str, Any]:
        trace = trace if trace is not None else TokenTrace()
        grant = form.get("grant_type", "")
        trace.grant = grant if grant in GRANTS else "unsupported"
        jkt = await self._dpop_jkt(dpop_proof)
        outcome: dict[str, Any] | OAuthError
        async with session_scope(self.sessions) as session:
            if grant == "client_credentials":
                outcome = await self._client_credentials(session, form, jkt, trace)
            elif grant == "authorization_code":
                outcome = await self._authorization_code(session, form, jkt, trace)
            elif grant == "refresh_token":
                outcome = await self._refresh(session, form, jkt, trace)
            else:
                raise OAuthError("unsupported_grant_type", "Supported grants: client_credentials, authorization_code, refresh_token.")
        # Raised after the commit: a detected reuse revokes the family for good.
        if isinstance(outcome, OAuthError):
            raise outcome
        trace.scope, trace.bound = str(outcome.get("scope", "")), outcome.get("token_type") == "DPoP"
        return outcome

    async def _client(
        self, session: AsyncSession, form: Mapping[str, str], *, public_allowed: bool, trace: TokenTrace | None = None
    ) -> OAuthClient:
        issuer = self.settings.issuer
        audiences = frozenset({issuer, f"{issuer}/oauth2/token", f"{issuer}/oauth2/introspect", f"{issuer}/oauth2/revoke"})
        client = await authenticate_client(
            session,
            form,
            audiences=audiences,
            markers=self.assertions,
            public_allowed=public_allowed,
            fetcher=self.jwks_fetcher,
            trace=trace,
        )
        if trace is not None:
            trace.client(client)
        return client

    async def _client_credentials(
        self, session: AsyncSession, form: Mapping[str, str], jkt: str | None, trace: TokenTrace
    ) -> dict[str, Any]:
        client = await self._client(session, form, public_allowed=False, trace=trace)
        requested, _, rejected = parse_scopes(form.get("scope", ""))
        allowed, _, _ = parse_scopes(client.scopes)
        granted = narrow([s for s in requested if s.context == "system"], allowed)
        if rejected or not granted:
            raise OAuthError("invalid_scope", "Request system/ scopes this client is registered for.")
        roles = parse_roles(client.roles) or frozenset({Role.CLINIC_CLIENT})
        return self.issue_access_token(
            tenant=client.tenant,
            subject=client.client_id,
            kind=Kind.CLIENT,
            roles=roles,
            client_id=client.client_id,
            scope=format_scopes(granted),
            second_factor=False,
            patient=None,
            jkt=jkt,
        )

    async def _user_token(
        self, session: AsyncSession, user: User, client: OAuthClient, scope: str, second_factor: bool, patient: str | None, jkt: str | None
    ) -> dict[str, Any]:
        return self.issue_access_token(
            tenant=user.tenant,
            subject=user.id,
            kind=Kind.USER,
            roles=parse_roles(user.roles),
            client_id=client.client_id,
            scope=scope,
            second_factor=second_factor,
            patient=patient,
            jkt=jkt,
        )

    async def _new_refresh(
        self, session: AsyncSession, family: str, client_id: str, user_id: str, scope: str, jkt: str | None, patient: str | None, mfa: bool
    ) -> str:
        token = secrets.token_urlsafe(32)
        await repository.add(
            session,
            RefreshToken(
                token_hash=token_hash(token),
                family_id=family,
                client_id=client_id,
                user_id=user_id,
                scope=scope,
                dpop_jkt=jkt,
                patient_id=patient,
                second_factor=mfa,
                expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl),
                used_at=None,
                revoked=False,
            ),
        )
        return token

    async def _authorization_code(
        self, session: AsyncSession, form: Mapping[str, str], jkt: str | None, trace: TokenTrace
    ) -> dict[str, Any] | OAuthError:
        client = await self._client(session, form, public_allowed=True, trace=trace)
        code_value, verifier = form.get("code", ""), form.get("code_verifier", "")
        code, consumed = await repository.take_code(session, token_hash(code_value))
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Unknown authorization code.", reason="code-unknown")
        trace.subject = code.user_id
        if not consumed:
            # A code used twice: the first exchange may have been an attacker's.
            await repository.revoke_family(session, code.code_hash)
            trace.family_revoked = True
            return OAuthError("invalid_grant", "This authorization code was already used; its tokens are revoked.", reason="code-reused")
        if _aware(code.expires_at) < datetime.now(UTC):
            raise OAuthError("invalid_grant", "The authorization code has expired.", reason="code-expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(
                "invalid_grant", "redirect_uri must equal the one of the authorization request.", reason="redirect-uri-mismatch"
            )
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(s256(verifier), code.code_challenge):
            raise OAuthError("invalid_grant", "PKCE verification failed (code_verifier, S256).", reason="pkce-failed")
        if client.kind == "app" and jkt is None:
            raise OAuthError(
                "invalid_dpop_proof", "App clients must send a DPoP proof: their tokens are bound to their key.", reason="dpop-missing"
            )
        if code.dpop_jkt is not None and code.dpop_jkt != jkt:
            raise OAuthError("invalid_dpop_proof", "The DPoP key differs from the one named at authorization.", reason="dpop-key-mismatch")
        user = await accounts_repository.get_user(session, code.user_id)
        if user is None or user.disabled:
            raise OAuthError("invalid_grant", "The user can no longer sign in.", reason="user-disabled")
        response = await self._user_token(session, user, client, code.scope, code.second_factor, code.patient_id, jkt)
        response["refresh_token"] = await self._new_refresh(
            session, code.code_hash, client.client_id, user.id, code.scope, jkt, code.patient_id, code.second_factor
        )
        return response

    async def _refresh(
        self, session: AsyncSession, form: Mapping[str, str], jkt: str | None, trace: TokenTrace
    ) -> dict[str, Any] | OAuthError:
        client = await self._client(session, form, public_allowed=True, trace=trace)
        stored = await repository.get_refresh(session, token_hash(form.get("refresh_token", "")))
        if stored is None or stored.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Unknown refresh token.", reason="refresh-token-unknown")
        trace.subject = stored.user_id
        now = datetime.now(UTC)
        if stored.revoked or stored.used_at is not None or not await repository.use_refresh(session, stored.token_hash, now):
            await repository.revoke_family(session, stored.family_id)
            trace.family_revoked = True
            return OAuthError(
                "invalid_grant",
                "This refresh token was already used: every token of its sign-in is revoked.",
                reason="refresh-token-reused",
            )
        if _aware(stored.expires_at) < now:
            raise OAuthError("invalid_grant", "The refresh token has expired.", reason="refresh-token-expired")
        if stored.dpop_jkt is not None and stored.dpop_jkt != jkt:
            raise OAuthError(
                "invalid_dpop_proof", "Refresh with a DPoP proof by the key the token is bound to.", reason="dpop-key-mismatch"
            )
        user = await accounts_repository.get_user(session, stored.user_id)
        if user is None or user.disabled:
            raise OAuthError("invalid_grant", "The user can no longer sign in.", reason="user-disabled")
        scope = stored.scope
        if requested := form.get("scope"):
            wanted, _, _ = parse_scopes(requested)
            have, others, _ = parse_scopes(stored.scope)
            scope = format_scopes(narrow(wanted, have), others)
        response = await self._user_token(session, user, client, scope, stored.second_factor, stored.patient_id, stored.dpop_jkt)
        response["refresh_token"] = await self._new_refresh(
            session, stored.family_id, client.client_id, user.id, scope, stored.dpop_jkt, stored.patient_id, stored.second_factor
        )
        return response

    # -- authorization endpoint ----------------------------------------------------

    async def check_authorization_request(self, session: AsyncSession, params: Mapping[str, str]) -> AuthorizationRequest:
        """Validate an authorize request. Errors before the redirect URI is known to
        be the client's are raised as :class:`OAuthError` (shown, never redirected)."""
        client = await repository.get_client(session, params.get("client_id", ""))
        if client is None or client.disabled:
            raise OAuthError("invalid_request", "Unknown client.")
        redirect_uri = params.get("redirect_uri", "")
        import orjson

        if redirect_uri not in orjson.loads(client.redirect_uris):
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client (exact match).")
        state = params.get("state", "")
        if params.get("response_type") != "code":
            raise AuthorizeError(redirect_uri, "unsupported_response_type", "Only response_type=code is supported.", state)
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or len(challenge) != 43 or not set(challenge) <= _CHALLENGE_CHARS:
            raise AuthorizeError(
                redirect_uri, "invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256.", state
            )
        if (aud := params.get("aud")) and aud.rstrip("/") != self.settings.fhir_base:
            raise AuthorizeError(redirect_uri, "invalid_request", "aud must be this server's FHIR base URL.", state)
        requested, others, rejected = parse_scopes(params.get("scope", ""))
        allowed, _, _ = parse_scopes(client.scopes)
        granted = narrow([s for s in requested if s.context in ("patient", "user")], allowed)
        if rejected or not granted:
            raise AuthorizeError(redirect_uri, "invalid_scope", "Request patient/ or user/ scopes this client is registered for.", state)
        jkt = params.get("dpop_jkt") or None
        return AuthorizationRequest(client, redirect_uri, granted, others, state, challenge, jkt)

    async def issue_code(self, session: AsyncSession, request: AuthorizationRequest, user: User, second_factor: bool) -> str:
        links = await accounts_repository.patients_of(session, user.id)
        roles = parse_roles(user.roles)
        # patient/ scopes only make sense for a patient; user/ scopes for staff.
        contexts = {"patient"} if Role.PATIENT in roles else {"user"}
        scopes = [s for s in request.scopes if s.context in contexts]
        if not scopes:
            raise AuthorizeError(request.redirect_uri, "invalid_scope", "None of the requested scopes fit this user's role.", request.state)
        patient = next((link.patient_id for link in links if link.relation == "self"), links[0].patient_id if links else None)
        code = secrets.token_urlsafe(32)
        await repository.add(
            session,
            AuthorizationCode(
                code_hash=token_hash(code),
                client_id=request.client.client_id,
                user_id=user.id,
                redirect_uri=request.redirect_uri,
                scope=format_scopes(scopes, request.other_scopes),
                code_challenge=request.code_challenge,
                dpop_jkt=request.dpop_jkt,
                patient_id=patient if Role.PATIENT in roles else None,
                second_factor=second_factor,
                expires_at=datetime.now(UTC) + timedelta(seconds=CODE_TTL_SECONDS),
                used=False,
            ),
        )
        return code

    # -- revocation (RFC 7009) and introspection (RFC 7662) ---------------------------

    async def revoke(self, form: Mapping[str, str], trace: TokenTrace | None = None) -> None:
        trace = trace if trace is not None else TokenTrace()
        trace.grant, trace.revoked = "revocation", "nothing"
        token = form.get("token", "")
        async with session_scope(self.sessions) as session:
            client = await self._client(session, form, public_allowed=True, trace=trace)
            stored = await repository.get_refresh(session, token_hash(token))
            if stored is not None:
                if stored.client_id == client.client_id:
                    await repository.revoke_family(session, stored.family_id)
                    trace.subject, trace.revoked, trace.family_revoked = stored.user_id, "refresh-family", True
                return
        try:
            claims = await self.verify_access_token(token)
        except InvalidToken:
            return  # RFC 7009 §2.2: an invalid token is not an error
        if claims.get("client_id") == client.client_id:
            await self.revoked.revoke(str(claims["jti"]), float(claims["exp"]) + 60)
            trace.subject, trace.revoked = str(claims.get("sub")), "access-token"

    async def introspect(self, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("token", "")
        async with session_scope(self.sessions) as session:
            client = await self._client(session, form, public_allowed=False)
            stored = await repository.get_refresh(session, token_hash(token))
            if stored is not None:
                now = datetime.now(UTC)
                active = (
                    stored.client_id == client.client_id
                    and not stored.revoked
                    and stored.used_at is None
                    and _aware(stored.expires_at) > now
                )
                if not active:
                    return {"active": False}
                return {"active": True, "client_id": stored.client_id, "scope": stored.scope, "token_type": "refresh_token"}
        try:
            claims = await self.verify_access_token(token)
        except InvalidToken:
            return {"active": False}
        if await self.revoked.is_revoked_now(str(claims["jti"])) or claims.get("tenant") != client.tenant:
            return {"active": False}
        keys = ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "cnf", "patient", "tenant", "roles")
        return {"active": True, "token_type": "DPoP" if "cnf" in claims else "Bearer"} | {k: claims[k] for k in keys if k in claims}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
