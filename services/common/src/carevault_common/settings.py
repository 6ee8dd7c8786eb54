"""Settings bases composed by each service's own ``Settings`` class.

Every service reads its settings from the environment with its own prefix
(``RECORDS_``, ``API_``...) and validates them at start, so a misconfigured pod
fails fast instead of serving half-working.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
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
    # With an OTLP endpoint: the share of traces recorded and exported (decided where a
    # trace starts, at the gateway; the hops behind follow). Without one, none is recorded.
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    sentry_dsn: str = ""
    # Seconds the server keeps serving in-flight requests after SIGTERM.
    graceful_shutdown_seconds: float = 10.0
    # Seconds a caller may take to send a request's head, or pause while sending its
    # body (the gateway's, facing the public, is the one that matters): then the
    # connection is closed (a body: 408), so slow or stalled clients cannot hold
    # connections, and the peers they stream to, for as long as they like.
    client_idle_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _tls_material_exists(self) -> ServiceSettings:
        for name in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            path: Path = getattr(self, name)
            if not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    def server_certificate(self) -> tuple[Path, Path]:
        """The certificate and key this service presents to its clients."""
        return self.tls_cert_file, self.tls_key_file

    def proxy_peers(self) -> list[str]:
        """Peers whose X-Forwarded-For names the client (none: the connecting address is the client)."""
        return []

    @property
    def is_production_like(self) -> bool:
        return self.environment in (Environment.PREPROD, Environment.PROD)


def read_secret_file(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


class DatabaseSettings(BaseSettings):
    """Mixed into the settings of every service that owns a database.

    The URL comes inline (local runs) or from a file (``DATABASE_URL_FILE``: a
    mounted Secret in Kubernetes, since it carries a password). A plain
    ``postgresql://`` URL, as CloudNativePG writes it, is taken as asyncpg.
    """

    database_url: str = ""
    database_url_file: Path | None = None
    # Per process, all kept open: a connection opened for a burst and closed after it
    # costs a TLS handshake and re-prepares every statement (measured: ~6 % of records'
    # CPU under load with 5 + 5 overflow). Sizing against max_connections: see
    # docs/operations.md, "Scale".
    database_pool_size: int = 8
    database_max_overflow: int = 0

    @model_validator(mode="after")
    def _resolve_url(self) -> DatabaseSettings:
        url = read_secret_file(self.database_url_file) if self.database_url_file is not None else self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+asyncpg://" + url.removeprefix(plain)
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("database_url must use sqlite+aiosqlite:// or postgresql(+asyncpg)://")
        object.__setattr__(self, "database_url", url)
        return self


def migration_settings(service_settings: type[BaseSettings]) -> type[DatabaseSettings]:
    """Settings for ``migrate``: the database only. A migration Job runs before the
    service's certificates and ports exist (Helm pre-install hook)."""
    config = SettingsConfigDict(env_prefix=service_settings.model_config.get("env_prefix", ""), extra="ignore", frozen=True)
    return type("MigrationSettings", (DatabaseSettings,), {"model_config": config})
