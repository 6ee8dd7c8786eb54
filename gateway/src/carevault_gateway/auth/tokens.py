"""Access-token and DPoP checks at the edge, before anything is forwarded.

The gateway verifies what api signed (pinned algorithms, signature, expiry,
issuer) with api's JWKS, fetched over mTLS at the first need, cached for five
minutes and fetched again when a token names an unknown key (at most every ten
seconds). A token whose signature verified once is remembered until it expires
(:class:`carevault_common.jose.VerifiedTokens`: only while its key is still in
the JWKS; the time claims are checked on every request). It checks every DPoP proof: method, URL (the public URL the client
used), age, key thumbprint equal to the token's ``cnf.jkt``, access-token hash,
and a ``jti`` never seen before, in a replay cache shared by the replicas
through Redis when configured. api checks all of it again (zero trust);
opaque tokens (the development token) are left to api.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request
from joserfc.jwk import KeySet

from carevault_common.clients import ServiceClient
from carevault_common.errors import ServiceUnavailable
from carevault_common.jose import (
    DPOP_MAX_AGE_SECONDS,
    InvalidDpopProof,
    InvalidToken,
    VerifiedTokens,
    check_binding,
    looks_like_jwt,
    token_key_id,
    verify_access_token,
    verify_dpop_proof,
)
from carevault_common.replay import ReplayCache

#: Paths that need no access token (sign-in itself, discovery, the capability statement).
PUBLIC_PREFIXES = ("/oauth2/", "/.well-known/", "/fhir/.well-known/")
PUBLIC_PATHS = frozenset({"/fhir/metadata", "/healthz"})
JWKS_MAX_AGE = 300.0
FORCED_REFRESH_INTERVAL = 10.0


class TokenGate:
    def __init__(self, api: ServiceClient, replay: ReplayCache, public_url: str = "") -> None:
        self.api, self.replay, self.public_url = api, replay, public_url.rstrip("/")
        self._keys: KeySet | None = None
        self._issuer = ""
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._verified = VerifiedTokens()

    async def _fetch(self) -> None:
        jwks = await self.api.request("GET", "/oauth2/jwks")
        discovery = await self.api.request("GET", "/.well-known/openid-configuration")
        if not jwks.ok or not discovery.ok:
            raise ServiceUnavailable("The signing keys of api are unavailable.")
        self._keys = KeySet.import_key_set(jwks.json())
        self._issuer = str(discovery.json()["issuer"])
        self._fetched_at = time.monotonic()

    async def _keyset(self, kid: str | None) -> tuple[KeySet, str]:
        age = time.monotonic() - self._fetched_at
        unknown = self._keys is None or kid not in {k.kid for k in self._keys.keys}
        if self._keys is None or age > JWKS_MAX_AGE or (unknown and age > FORCED_REFRESH_INTERVAL):
            async with self._lock:
                if self._keys is None or time.monotonic() - self._fetched_at > min(age, FORCED_REFRESH_INTERVAL):
                    await self._fetch()
        assert self._keys is not None
        return self._keys, self._issuer

    def _url(self, request: Request) -> str:
        base = self.public_url or f"https://{request.headers.get('host', '')}"
        return base + request.url.path

    async def check(self, request: Request) -> None:
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        scheme, token = scheme.lower(), token.strip()
        if scheme not in ("bearer", "dpop") or not looks_like_jwt(token):
            if scheme == "dpop":
                raise InvalidToken(scheme="DPoP")
            return  # no token, or an opaque one: api decides (and refuses)
        keys, issuer = self._keys, self._issuer
        if keys is None or time.monotonic() - self._fetched_at > JWKS_MAX_AGE or self._verified.get(token, keys, issuer) is None:
            keys, issuer = await self._keyset(token_key_id(token))
        claims = verify_access_token(token, keys, issuer=issuer, scheme="DPoP" if scheme == "dpop" else "Bearer", verified=self._verified)
        proof_header = request.headers.get("dpop")
        proof = None
        if proof_header is not None:
            proof = verify_dpop_proof(proof_header, method=request.method, url=self._url(request), access_token=token)
            if not await self.replay.first_use(proof.jti, DPOP_MAX_AGE_SECONDS * 2):
                raise InvalidDpopProof("This DPoP proof was already used.")
        check_binding(claims, proof, scheme)
