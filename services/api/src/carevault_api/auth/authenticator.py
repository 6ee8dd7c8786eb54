"""Who is calling: an OAuth2 access token signed by api (Bearer, or DPoP-bound
with a proof by the token's key), or, in the dev environment only, the
development token.

api checks everything the gateway checked (zero trust): the pinned algorithms,
signature, expiry, the DPoP proof (method, URL from the public base URL, age,
``jti`` replay in api's own cache, access-token hash, key thumbprint), and also
whether the token was revoked.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from carevault_api.auth.dev import DevTokenAuthenticator
from carevault_api.auth.principal import Kind, Principal, Role
from carevault_api.auth.scopes import parse_scopes
from carevault_api.oauth.service import OAuthService
from carevault_common.errors import Unauthorized
from carevault_common.jose import DPOP_MAX_AGE_SECONDS, InvalidDpopProof, InvalidToken, check_binding, looks_like_jwt, verify_dpop_proof
from carevault_common.replay import ReplayCache

_CHALLENGE = {"www-authenticate": 'Bearer realm="carevault", DPoP realm="carevault" algs="ES256 ES384 EdDSA RS256 PS256"'}


class Authenticator:
    def __init__(self, oauth: OAuthService, public_url: str, dpop_replay: ReplayCache, dev: DevTokenAuthenticator | None) -> None:
        self.oauth, self.public_url, self.dpop_replay, self.dev = oauth, public_url.rstrip("/"), dpop_replay, dev

    async def authenticate(self, request: Request) -> Principal:
        """Once per request (several dependencies may ask): a DPoP proof is used once."""
        known: Principal | None = getattr(request.state, "principal", None)
        if known is None:
            known = await self._authenticate(request)
            request.state.principal = known
        return known

    async def _authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if self.dev is not None and scheme == "bearer" and token and not looks_like_jwt(token):
            return self.dev.authenticate(request)
        if scheme not in ("bearer", "dpop") or not token:
            raise Unauthorized("A valid access token is required.", headers=_CHALLENGE)
        claims = await self.oauth.verify_access_token(token)
        proof_header = request.headers.get("dpop")
        proof = None
        if proof_header is not None:
            proof = verify_dpop_proof(proof_header, method=request.method, url=self.public_url + request.url.path, access_token=token)
            if not await self.dpop_replay.first_use(f"rs:{proof.jti}", DPOP_MAX_AGE_SECONDS * 2):
                raise InvalidDpopProof("This DPoP proof was already used.")
        check_binding(claims, proof, scheme)
        if await self.oauth.revoked.seen(f"at:{claims['jti']}"):
            raise InvalidToken("The access token was revoked.")
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        kind = Kind(claims["kind"])
        roles = frozenset(Role(r) for r in claims.get("roles", []))
        scopes, _, _ = parse_scopes(str(claims.get("scope", "")))
        amr = claims.get("amr", [])
        return Principal(
            tenant=str(claims["tenant"]),
            subject=str(claims["sub"]),
            kind=kind,
            roles=roles,
            client_id=str(claims["client_id"]),
            scopes=tuple(scopes),
            second_factor=kind == Kind.USER and isinstance(amr, list) and "otp" in amr,
            patient=claims.get("patient") if isinstance(claims.get("patient"), str) else None,
            token_id=str(claims["jti"]),
        )
    except (KeyError, ValueError):
        raise InvalidToken() from None
