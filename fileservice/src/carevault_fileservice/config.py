from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from carevault_common.settings import DatabaseSettings, ServiceSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class Settings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="FILESERVICE_", extra="ignore", frozen=True)

    port: int = 8447
    management_port: int = 9084
    blob_dir: Path = Path(".carevault/blobs")
