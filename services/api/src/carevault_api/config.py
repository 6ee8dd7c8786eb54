from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from carevault_common.settings import DatabaseSettings, Environment, ServiceSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class Settings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore", frozen=True)

    port: int = 8444
    management_port: int = 9081
    records_url: str = "https://127.0.0.1:8445"
    fileservice_url: str = "https://127.0.0.1:8447"
    keyservice_url: str = "https://127.0.0.1:8446"
    # Development authentication until OAuth2 lands: a bearer token read from this
    # file grants the "dev" tenant. Refused outside the dev environment.
    dev_token_file: Path | None = None
    # Largest Binary content accepted (413 beyond); fileservice and the gateway have their own.
    max_binary_bytes: int = 2 * 1024 * 1024 * 1024
    # Largest Binary returned as base64 ``data`` in JSON (406 above: ask for the raw type).
    binary_json_limit: int = 1024 * 1024
    # Seconds a file transfer to or from fileservice may stall before it fails.
    file_transfer_idle_seconds: float = 60.0

    # -- audit trail (docs/audit.md) --------------------------------------------------
    # The Ed25519 key that signs checkpoints of the chain head (a mounted Secret; never
    # in the database). Required outside dev; in dev, no checkpoints without it.
    audit_checkpoint_key_file: Path | None = None
    # The HMAC key of the patient pseudonyms in the audit trail and the erasure journal.
    # Required outside dev; in dev, an ephemeral key (pseudonyms change on restart).
    audit_pseudonym_key_file: Path | None = None
    audit_checkpoint_interval_seconds: float = 300.0
    # Events older than this are pruned, at a signed checkpoint (docs/audit.md, "Retention").
    audit_retention_days: int = 3653
    audit_prune_interval_seconds: float = 86400.0
    # How long an append waits for the chain head before the request fails (503).
    audit_lock_timeout_ms: int = 2000

    @model_validator(mode="after")
    def _dev_token_only_in_dev(self) -> Settings:
        if self.dev_token_file is not None and self.environment != Environment.DEV:
            raise ValueError("dev_token_file is a development aid and is refused outside the dev environment")
        return self

    @model_validator(mode="after")
    def _audit_keys(self) -> Settings:
        if self.environment != Environment.DEV:
            for name in ("audit_checkpoint_key_file", "audit_pseudonym_key_file"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name} is required outside the dev environment")
        for name in ("audit_checkpoint_key_file", "audit_pseudonym_key_file"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if self.audit_retention_days < 180:
            raise ValueError("audit_retention_days below 180 days defeats the audit trail (docs/audit.md)")
        if self.audit_checkpoint_interval_seconds <= 0 or self.audit_prune_interval_seconds <= 0:
            raise ValueError("audit intervals must be positive")
        return self
