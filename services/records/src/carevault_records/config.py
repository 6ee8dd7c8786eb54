from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from carevault_common.settings import DatabaseSettings, ServiceSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class Settings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECORDS_", extra="ignore", frozen=True)

    port: int = 8445
    management_port: int = 9082
    keyservice_url: str = "https://127.0.0.1:8446"
    # How long records trusts its view of the active hosting-doctor keys; a key
    # added to keyservice reaches each patient on the first use after this.
    escrow_keyset_ttl_seconds: float = 30.0
