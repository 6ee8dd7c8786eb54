"""Who is calling: an OAuth2 access token signed by api (Bearer, or DPoP-bound
with a proof by the token's key), or, in the dev environment only, the
development token.

api checks everything the gateway checked (zero trust: nothing the gateway
says about a token is believed, so a stolen gateway certificate alone does not
let anyone use a DPoP-bound token without its key): the pinned algorithms,
signature, issuer and expiry of the token; the DPoP proof (signature by the
key the token is bound to, method, URL from the public base URL, age,
access-token hash, and its ``jti`` once per replica: platform-wide single use is
the gateway's shared check, see docs/security-access.md); and also
whether the token was revoked (:mod:`carevault_api.oauth.revocation`, from
memory). What keeps this cheap: a token's signature is verified once per
replica and remembered until it expires (only while its key is published), the
principal derived from its claims likewise, and the parsing of a client's DPoP
key once per distinct proof header; the signature of every proof is verified.
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

#: Authentication methods (RFC 8176) that mean a second factor passed ("otp": tokens issued before "mfa").
SECOND_FACTOR_AMR = frozenset({"mfa", "otp"})
_CHALLENGE = {"www-authenticate": 'Bearer realm="carevault", DPoP realm="carevault" algs="ES256 ES384 EdDSA RS256 PS256"'}


class Authenticator:
    def __init__(self, oauth: OAuthService, public_url: str, dpop_replay: ReplayCache, dev: DevTokenAuthenticator | None) -> None:
        self.oauth, self.public_url, self.dpop_replay, self.dev = oauth, public_url.rstrip("/"), dpop_replay, dev
        self._principals: dict[str, Principal] = {}

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
        claims = await self.oauth.verify_access_token(token, "DPoP" if scheme == "dpop" else "Bearer")
        proof_header = request.headers.get("dpop")
        proof = None
        if proof_header is not None:
            proof = verify_dpop_proof(proof_header, method=request.method, url=self.public_url + request.url.path, access_token=token)
            if not await self.dpop_replay.first_use(f"rs:{proof.jti}", DPOP_MAX_AGE_SECONDS * 2):
                raise InvalidDpopProof("This DPoP proof was already used.")
        check_binding(claims, proof, scheme)
        if await self.oauth.revoked.is_revoked(str(claims.get("jti"))):
            raise InvalidToken("The access token was revoked.")
        principal = self._principals.get(token)
        if principal is None:
            principal = principal_from_claims(claims)
            if len(self._principals) >= 10_000:
                self._principals.clear()
            self._principals[token] = principal
        return principal


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
            second_factor=kind == Kind.USER and isinstance(amr, list) and not SECOND_FACTOR_AMR.isdisjoint(amr),
            patient=claims.get("patient") if isinstance(claims.get("patient"), str) else None,
            token_id=str(claims["jti"]),
            break_glass=claims.get("break_glass") if isinstance(claims.get("break_glass"), str) else None,
        )
    except (KeyError, ValueError):
        raise InvalidToken() from None
