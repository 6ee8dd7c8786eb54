"""Client authentication at the token, revocation and introspection endpoints.

``private_key_jwt`` (RFC 7523 §2.2, as SMART Backend Services v2 requires): a
JWT signed with RS384 or ES384 by a key of the client's registered JWKS, with
``iss`` = ``sub`` = client id, ``aud`` = the token endpoint, an ``exp`` at most
five minutes ahead and a ``jti`` never seen before (checked in the replay store
shared by every replica). The client's keys are its registered JWKS, or fetched
from its registered JWKS URL (:mod:`carevault_api.oauth.jwks_fetch`). Public app
clients send only their ``client_id``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_api.models_identity import OAuthClient
from carevault_api.oauth import repository
from carevault_api.oauth.errors import OAuthError
from carevault_api.oauth.jwks_fetch import JwksFetcher, JwksUnavailable
from carevault_common.jose import unverified_header

if TYPE_CHECKING:
    from carevault_api.oauth.service import TokenTrace
from carevault_common.replay import ReplayCache

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
CLOCK_SKEW = 5


def _invalid(description: str = "Client authentication failed.", reason: str = "client-authentication-failed") -> OAuthError:
    return OAuthError("invalid_client", description, reason=reason)


async def authenticate_client(
    session: AsyncSession,
    form: Mapping[str, str],
    *,
    audiences: frozenset[str],
    markers: ReplayCache,
    public_allowed: bool,
    fetcher: JwksFetcher | None = None,
    trace: TokenTrace | None = None,
) -> OAuthClient:
    """``audiences``: what the assertion's ``aud`` may name (the token endpoint,
    the issuer, or the endpoint being called). ``trace`` learns the client as soon as
    it is known, so that a refused assertion is recorded against that client's tenant."""
    assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
    if assertion is None:
        client_id = form.get("client_id") or ""
        client = await repository.get_client(session, client_id) if client_id else None
        if client is None or client.disabled or client.kind != "app" or not public_allowed:
            if client is not None and trace is not None:
                trace.client(client)
            raise _invalid(reason="client-unknown" if client is None else "client-not-allowed")
        return client
    if assertion_type != ASSERTION_TYPE:
        raise _invalid("Unsupported client_assertion_type.", "assertion-type")
    try:
        header = unverified_header(assertion)
        unverified = orjson.loads(jwt_payload_unverified(assertion))
    except Exception:
        raise _invalid(reason="assertion-malformed") from None
    issuer = unverified.get("iss") if isinstance(unverified, dict) else None
    if not isinstance(issuer, str) or header.get("alg") not in ASSERTION_ALGORITHMS:
        raise _invalid(reason="assertion-malformed")
    client_id = issuer
    if form.get("client_id") not in (None, client_id):
        raise _invalid(reason="assertion-malformed")
    client = await repository.get_client(session, client_id)
    if client is not None and trace is not None:
        trace.client(client)
    if client is None or client.disabled or client.kind != "backend" or not (client.jwks or client.jwks_uri):
        raise _invalid(reason="client-unknown" if client is None else "client-not-allowed")
    if client.jwks:
        keys = KeySet.import_key_set(orjson.loads(client.jwks))
    else:
        if fetcher is None or client.jwks_uri is None:
            raise _invalid()
        kid = header.get("kid")
        try:
            keys = await fetcher.keys(client.jwks_uri, kid if isinstance(kid, str) else None)
        except JwksUnavailable:
            raise _invalid("The client's JWKS URL could not be read.", "jwks-unavailable") from None
    try:
        claims = dict(jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGORITHMS)).claims)
    except (JoseError, ValueError):
        raise _invalid(reason="assertion-signature") from None
    now = time.time()
    exp, jti = claims.get("exp"), claims.get("jti")
    audience = claims.get("aud")
    named = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != client_id or claims.get("sub") != client_id or not audiences.intersection(named):
        raise _invalid(reason="assertion-claims")
    if not isinstance(exp, int) or exp <= now - CLOCK_SKEW or exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise _invalid("The client assertion has expired or lives longer than five minutes.", "assertion-lifetime")
    iat = claims.get("iat")
    if isinstance(iat, int) and (iat > now + CLOCK_SKEW or exp - iat > MAX_ASSERTION_LIFETIME + CLOCK_SKEW):
        raise _invalid("The client assertion lives longer than five minutes.", "assertion-lifetime")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 200:
        raise _invalid("The client assertion needs a jti.", "assertion-claims")
    if not await markers.first_use(f"{client_id}:{jti}", int(exp - now) + MAX_ASSERTION_LIFETIME):
        raise _invalid("This client assertion was already used.", "assertion-replayed")
    return client


def jwt_payload_unverified(token: str) -> bytes:
    import base64

    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
