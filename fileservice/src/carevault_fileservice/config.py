from __future__ import annotations

from pathlib import Path

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from carevault_common.settings import DatabaseSettings, ServiceSettings
from carevault_crypto import DEFAULT_SEGMENT_SIZE, SEGMENT_SIZES

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

MIB = 1024 * 1024
GIB = 1024 * MIB
# S3 multipart parts must be at least 5 MiB (but the last); at most 10,000 parts.
S3_MIN_PART_SIZE = 5 * MIB


class Settings(ServiceSettings, DatabaseSettings):
    """fileservice settings (``FILESERVICE_`` prefix).

    Blobs go to S3-compatible object storage when ``s3_bucket`` is set, else to
    ``blob_dir`` (the embedded default). The S3 credentials come from files (a
    mounted Secret), never from the environment; without them the standard AWS
    credential chain applies (e.g. a workload identity).
    """

    model_config = SettingsConfigDict(env_prefix="FILESERVICE_", extra="ignore", frozen=True)

    port: int = 8447
    management_port: int = 9084
    blob_dir: Path = Path(".carevault/blobs")
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id_file: Path | None = None
    s3_secret_access_key_file: Path | None = None
    s3_part_size: int = 8 * MIB
    # Largest plaintext accepted (413 beyond). The gateway and api have their own limits.
    max_blob_bytes: int = 2 * GIB
    # Streaming AEAD segment size of new blobs (existing blobs carry theirs in their header).
    segment_size: int = DEFAULT_SEGMENT_SIZE
    # Temporary files of uploads that never finished (a crash) are removed at start
    # once they are this old; younger ones may belong to another replica's upload.
    incomplete_upload_grace_seconds: int = 6 * 3600

    @model_validator(mode="after")
    def _check_storage(self) -> Settings:
        if self.segment_size not in SEGMENT_SIZES:
            raise ValueError(f"segment_size must be one of {SEGMENT_SIZES}")
        if (self.s3_access_key_id_file is None) != (self.s3_secret_access_key_file is None):
            raise ValueError("set both s3_access_key_id_file and s3_secret_access_key_file, or neither")
        if self.s3_part_size < S3_MIN_PART_SIZE:
            raise ValueError("s3_part_size must be at least 5 MiB")
        if self.max_blob_bytes <= 0:
            raise ValueError("max_blob_bytes must be positive")
        return self

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_bucket)
