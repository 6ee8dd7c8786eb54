"""The development token counts as its tenant's auditor and data-protection officer
(audit/permissions.py), so it must not exist outside the dev environment: settings
refuse a token file there, sign-in setup refuses it again for settings that skipped
validation, and an api set up for production answers the dev token 401 on
``/fhir/AuditEvent`` and ``$erase`` (it is just an unknown bearer token there)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from carevault_api.audit.permissions import can_erase, can_read_audit
from carevault_api.audit.router import router as audit_router
from carevault_api.auth.setup import close_sign_in, dev_authenticator, start_sign_in
from carevault_api.config import Settings
from carevault_api.erasure.router import router as erasure_router
from carevault_common.app import build_app
from carevault_common.db import create_engine, session_factory
from carevault_common.settings import Environment
from carevault_crypto.sealed import SealingKey

NOT_DEV = [e for e in Environment if e != Environment.DEV]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Files the settings check for; only their existence matters here (no TLS is served)."""
    paths = {name: tmp_path / name for name in ("cert.pem", "key.pem", "ca.pem", "checkpoint.key", "pseudonym.key")}
    for path in paths.values():
        path.write_text("unused", encoding="utf-8")
    paths["secrets.key"] = tmp_path / "secrets.key"
    SealingKey.generate_file(paths["secrets.key"])
    paths["dev-token"] = tmp_path / "dev-token"
    paths["dev-token"].write_text(secrets.token_urlsafe(32), encoding="utf-8")
    return paths


def settings_for(environment: Environment, files: dict[str, Path], database_url: str, **extra: Any) -> Settings:
    return Settings(
        environment=environment,
        tls_cert_file=files["cert.pem"],
        tls_key_file=files["key.pem"],
        tls_ca_file=files["ca.pem"],
        database_url=database_url,
        secrets_key_file=files["secrets.key"],
        audit_checkpoint_key_file=files["checkpoint.key"],
        audit_pseudonym_key_file=files["pseudonym.key"],
        public_url="https://carevault.example",
        **extra,
    )


@pytest.mark.parametrize("environment", NOT_DEV, ids=str)
def test_settings_refuse_the_dev_token_outside_dev(environment: Environment, files: dict[str, Path]) -> None:
    settings_for(environment, files, "sqlite+aiosqlite:///unused.sqlite")  # complete and valid without it
    with pytest.raises(ValidationError, match="dev_token_file"):
        settings_for(environment, files, "sqlite+aiosqlite:///unused.sqlite", dev_token_file=files["dev-token"])


@pytest.mark.parametrize("environment", NOT_DEV, ids=str)
def test_sign_in_setup_refuses_it_even_from_unvalidated_settings(environment: Environment, files: dict[str, Path]) -> None:
    sneaked = Settings.model_construct(environment=environment, dev_token_file=files["dev-token"])
    with pytest.raises(RuntimeError, match="outside the dev environment"):
        dev_authenticator(sneaked)
    assert dev_authenticator(Settings.model_construct(environment=Environment.DEV, dev_token_file=files["dev-token"])) is not None


async def _api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """api's sign-in as its lifespan builds it, in front of the real AuditEvent and $erase routes."""
    engine = create_engine(settings.database_url)
    app = build_app("api")
    app.state.settings = settings
    app.state.sessions = session_factory(engine)
    await start_sign_in(app, settings)
    app.include_router(audit_router)
    app.include_router(erasure_router)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.test") as client:
            yield client
    finally:
        await close_sign_in(app)
        await engine.dispose()


@pytest.mark.parametrize("environment", [Environment.PROD, Environment.PREPROD], ids=str)
async def test_a_production_api_answers_the_dev_token_401_on_auditevent_and_erase(
    environment: Environment, files: dict[str, Path], api_database: str
) -> None:
    dev_token = files["dev-token"].read_text(encoding="utf-8")
    headers = {"authorization": f"Bearer {dev_token}"}
    # In dev, that token is the dev tenant's auditor and data-protection officer ...
    dev = dev_authenticator(settings_for(Environment.DEV, files, api_database, dev_token_file=files["dev-token"]))
    assert dev is not None
    principal = dev.authenticate(request_with(headers))
    assert can_read_audit(principal, principal.tenant) and can_erase(principal, principal.tenant)
    # ... in production it authenticates as nobody.
    async for api in _api(settings_for(environment, files, api_database)):
        search = await api.get("/fhir/AuditEvent", headers=headers)
        read = await api.get("/fhir/AuditEvent/some-event", headers=headers)
        erase = await api.post("/fhir/Patient/some-patient/$erase", headers=headers)
        for answer in (search, read, erase):
            assert answer.status_code == 401, answer.text
            assert answer.headers["content-type"].startswith(("application/problem+json", "application/fhir+json"))


def request_with(headers: dict[str, str]) -> Any:
    """A Starlette request carrying only these headers (what the dev authenticator reads)."""
    from starlette.requests import Request

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    return Request(scope)
