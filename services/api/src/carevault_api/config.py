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

    @model_validator(mode="after")
    def _dev_token_only_in_dev(self) -> Settings:
        if self.dev_token_file is not None and self.environment != Environment.DEV:
            raise ValueError("dev_token_file is a development aid and is refused outside the dev environment")
        return self
