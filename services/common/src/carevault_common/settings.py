"""Settings bases composed by each service's own ``Settings`` class.

Every service reads its settings from the environment with its own prefix
(``RECORDS_``, ``API_``...) and validates them at start, so a misconfigured pod
fails fast instead of serving half-working.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEV = "dev"
    DEMO = "demo"
    PREPROD = "preprod"
    PROD = "prod"


class ServiceSettings(BaseSettings):
    """What every service has: where it listens, its TLS identity, telemetry."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int
    management_port: int
    tls_cert_file: Path
    tls_key_file: Path
    tls_ca_file: Path
    environment: Environment = Environment.DEV
    log_level: str = "INFO"
    log_file: Path | None = None
    otlp_endpoint: str = ""
    sentry_dsn: str = ""
    # Seconds the server keeps serving in-flight requests after SIGTERM.
    graceful_shutdown_seconds: float = 10.0

    @model_validator(mode="after")
    def _tls_material_exists(self) -> ServiceSettings:
        for name in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            path: Path = getattr(self, name)
            if not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    @property
    def is_production_like(self) -> bool:
        return self.environment in (Environment.PREPROD, Environment.PROD)


class DatabaseSettings(BaseSettings):
    """Mixed into the settings of every service that owns a database."""

    database_url: str

    @field_validator("database_url")
    @classmethod
    def _supported_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("database_url must use sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value
