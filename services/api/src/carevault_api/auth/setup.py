"""Building (in the lifespan) what sign-in needs: signing keys, replay stores,
the OAuth2 service, the authenticator and the FHIR authorizer."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from carevault_api.auth.authenticator import Authenticator
from carevault_api.auth.dev import DevTokenAuthenticator
from carevault_api.authorization.fhir import FhirAuthorizer
from carevault_api.config import Settings
from carevault_api.oauth.jwks_fetch import JwksFetcher
from carevault_api.oauth.markers import build_markers
from carevault_api.oauth.revocation import build_revocations
from carevault_api.oauth.service import OAuthService, OAuthSettings
from carevault_api.secrets import Secrets
from carevault_api.signing.service import SigningKeys
from carevault_api.webauthn.service import RelyingParty
from carevault_common.replay import LocalReplayCache
from carevault_common.settings import Environment


def dev_authenticator(settings: Settings) -> DevTokenAuthenticator | None:
    """The development token, in the dev environment only. Its principal acts on the
    dev tenant's FHIR data and counts as that tenant's auditor and data-protection
    officer (audit/permissions.py), so it must never exist anywhere else. The settings
    refuse a token file outside dev; this refuses it again, for settings that reached
    here without that validation (docs/security-access.md, "The development token")."""
    if settings.dev_token_file is None:
        return None
    if settings.environment != Environment.DEV:
        raise RuntimeError("the development token is refused outside the dev environment")
    return DevTokenAuthenticator(settings.dev_token_file)


async def start_sign_in(app: FastAPI, settings: Settings) -> None:
    sessions = app.state.sessions
    secrets = Secrets.from_files(settings.secrets_key_file, settings.secrets_previous_key_file)
    app.state.secrets = secrets
    keys = SigningKeys(
        sessions,
        algorithm=settings.signing_algorithm,
        rotate_after=timedelta(days=settings.signing_key_rotation_days),
        token_ttl=settings.access_token_ttl_seconds,
        secrets=secrets,
    )
    await keys.ensure()
    # DPoP proofs at the token endpoint: api is their only checker (the gateway lets sign-in
    # through), so their jti is kept where every replica sees it (Redis, else api's database).
    dpop = build_markers(settings.redis_url, sessions, "dpop")
    revoked = build_revocations(settings.redis_url, sessions, settings.revocation_refresh_seconds)
    await revoked.start()
    oauth = OAuthService(
        sessions,
        keys,
        OAuthSettings(settings.public_url, settings.access_token_ttl_seconds, settings.refresh_token_ttl_seconds),
        assertions=build_markers(settings.redis_url, sessions, "assertion"),
        revoked=revoked,
        dpop_replay=dpop,
        jwks_fetcher=JwksFetcher(private_networks=settings.jwks_uri_private_networks),
    )
    dev = dev_authenticator(settings)
    app.state.oauth = oauth
    # DPoP proofs on resource requests: verified again here, their jti kept once per replica; the
    # gateway's cache, shared through Redis, is what makes a proof single-use platform-wide.
    app.state.authenticator = Authenticator(oauth, settings.public_url, LocalReplayCache(), dev)
    app.state.fhir_authorizer = FhirAuthorizer(sessions)
    app.state.relying_party = RelyingParty(settings.webauthn_rp_id, tuple(settings.webauthn_origins), settings.webauthn_rp_name)


async def close_sign_in(app: FastAPI) -> None:
    oauth: OAuthService | None = getattr(app.state, "oauth", None)
    if oauth is None:
        return
    for cache in (oauth.assertions, oauth.revoked, oauth.dpop_replay, oauth.jwks_fetcher):
        await cache.close()
