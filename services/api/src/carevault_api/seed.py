"""``carevault-api seed --state-dir DIR``: the first-look data of ``make run``.

Creates (once) a demo tenant, an administrator with a TOTP second factor (its
password, TOTP secret and recovery codes are printed once, never stored in
clear), a demo clinic client whose client id and private JWK are written to
``DIR/demo-client.json`` (mode 0600), and a demo public app client. Refused
outside the dev and demo environments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from joserfc.jwk import ECKey
from pydantic_settings import SettingsConfigDict

from carevault_api.accounts import repository as accounts
from carevault_api.accounts.service import create_user, ensure_tenant
from carevault_api.auth.principal import Role
from carevault_api.models_identity import OAuthClient
from carevault_api.oauth import repository as clients
from carevault_api.secrets import Secrets
from carevault_common.db import create_engine, session_factory, session_scope
from carevault_common.settings import DatabaseSettings, Environment

DEMO_TENANT = "demo"
ADMIN_USERNAME = "admin"
DEMO_CLIENT_SCOPES = "system/*.cruds"
DEMO_APP_ID = "demo-app"
DEMO_APP_REDIRECT = "http://127.0.0.1:8765/callback"


class SeedSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore", frozen=True)

    public_url: str = "https://127.0.0.1:8443"
    environment: Environment = Environment.DEV
    secrets_key_file: Path | None = None
    secrets_previous_key_file: Path | None = None
    signing_algorithm: str = "ES256"
    access_token_ttl_seconds: int = 300

    def secrets(self) -> Secrets:
        return Secrets.from_files(self.secrets_key_file, self.secrets_previous_key_file)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


async def seed(settings: SeedSettings, state_dir: Path) -> list[str]:
    lines: list[str] = []
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    public = settings.public_url.rstrip("/")
    try:
        async with session_scope(sessions) as session:
            await ensure_tenant(session, DEMO_TENANT, "Demo clinic")
            if await accounts.find_user(session, DEMO_TENANT, ADMIN_USERNAME) is None:
                password = secrets.token_urlsafe(18)
                roles = frozenset({Role.TENANT_ADMIN, Role.PLATFORM_ADMIN})
                _, enrolment = await create_user(session, DEMO_TENANT, ADMIN_USERNAME, password, roles, settings.secrets(), with_totp=True)
                assert enrolment is not None
                lines += [
                    "Demo administrator created (shown once, store it now):",
                    f"  organisation: {DEMO_TENANT}",
                    f"  username: {ADMIN_USERNAME}",
                    f"  password: {password}",
                    f"  TOTP secret: {enrolment.secret}",
                    f"  otpauth URI: {enrolment.otpauth_uri}",
                    f"  recovery codes: {' '.join(enrolment.recovery_codes)}",
                ]
            client_file = state_dir / "demo-client.json"
            existing = orjson.loads(client_file.read_bytes()) if client_file.exists() else None
            if existing is None or await clients.get_client(session, str(existing.get("client_id"))) is None:
                client_id = str(uuid.uuid4())
                key = ECKey.generate_key("P-384", parameters={"kid": uuid.uuid4().hex, "alg": "ES384", "use": "sig"})
                public_jwk = key.as_dict(private=False) | {"alg": "ES384", "use": "sig"}
                await clients.add(
                    session,
                    OAuthClient(
                        client_id=client_id,
                        tenant=DEMO_TENANT,
                        name="Demo clinic software",
                        kind="backend",
                        jwks=orjson.dumps({"keys": [public_jwk]}).decode(),
                        jwks_uri=None,
                        redirect_uris="[]",
                        scopes=DEMO_CLIENT_SCOPES,
                        roles=Role.CLINIC_CLIENT.value,
                        disabled=False,
                        created_at=datetime.now(UTC),
                    ),
                )
                document = {
                    "client_id": client_id,
                    "token_endpoint": f"{public}/oauth2/token",
                    "fhir_base": f"{public}/fhir",
                    "scope": DEMO_CLIENT_SCOPES,
                    "token_endpoint_auth_method": "private_key_jwt",
                    "alg": "ES384",
                    "private_jwk": key.as_dict(private=True) | {"alg": "ES384", "use": "sig"},
                }
                _write_private(client_file, orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
                lines.append(f"Demo clinic client {client_id}: its private JWK is in {client_file}")
            if await clients.get_client(session, DEMO_APP_ID) is None:
                await clients.add(
                    session,
                    OAuthClient(
                        client_id=DEMO_APP_ID,
                        tenant=DEMO_TENANT,
                        name="Demo mobile app",
                        kind="app",
                        jwks=None,
                        jwks_uri=None,
                        redirect_uris=orjson.dumps([DEMO_APP_REDIRECT]).decode(),
                        scopes="patient/*.cruds user/*.cruds",
                        roles="",
                        disabled=False,
                        created_at=datetime.now(UTC),
                    ),
                )
                lines.append(f"Demo app client {DEMO_APP_ID} (public, PKCE + DPoP), redirect URI {DEMO_APP_REDIRECT}")
    finally:
        await engine.dispose()
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="carevault-api seed")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    settings = SeedSettings()
    if settings.environment not in (Environment.DEV, Environment.DEMO):
        print("carevault-api seed: refused outside the dev and demo environments", file=sys.stderr)
        return 2
    for line in asyncio.run(seed(settings, Path(args.state_dir))):
        print(line)
    return 0


async def rotate(settings: SeedSettings) -> str:
    from datetime import timedelta

    from carevault_api.signing.service import SigningKeys

    engine = create_engine(settings.database_url)
    try:
        keys = SigningKeys(
            session_factory(engine),
            algorithm=settings.signing_algorithm,
            rotate_after=timedelta(days=3650),
            token_ttl=settings.access_token_ttl_seconds,
            secrets=settings.secrets(),
        )
        await keys.ensure()
        return await keys.rotate()
    finally:
        await engine.dispose()
