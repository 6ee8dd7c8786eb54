from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from carevault_common.settings import DatabaseSettings, ServiceSettings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


class Settings(ServiceSettings, DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYSERVICE_", extra="ignore", frozen=True)

    port: int = 8446
    management_port: int = 9083
    # One file per active hosting-doctor public key (a mounted Secret or ConfigMap in Kubernetes).
    doctor_keys_dir: Path = Path(".carevault/doctor/public")
    # How long an approved break-glass request allows the package to be downloaded.
    break_glass_window_seconds: int = 24 * 3600
