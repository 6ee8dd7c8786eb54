"""Where ciphertext blobs live: a local directory or S3-compatible object storage.

Both backends give the same guarantee: a blob becomes visible under its id only
once it is complete and durable (:meth:`BlobWriter.commit`); an upload that is
aborted or interrupted leaves nothing under that id.
"""

from __future__ import annotations

from carevault_fileservice.config import Settings
from carevault_fileservice.storage.base import BlobStore, BlobWriter, StoredObjectMissing
from carevault_fileservice.storage.local import LocalBlobStore

__all__ = ["BlobStore", "BlobWriter", "LocalBlobStore", "StoredObjectMissing", "build_store"]


def build_store(settings: Settings) -> BlobStore:
    if settings.uses_s3:
        from carevault_common.settings import read_secret_file
        from carevault_fileservice.storage.s3 import S3BlobStore, S3Credentials

        credentials = None
        if settings.s3_access_key_id_file is not None and settings.s3_secret_access_key_file is not None:
            credentials = S3Credentials(
                read_secret_file(settings.s3_access_key_id_file), read_secret_file(settings.s3_secret_access_key_file)
            )
        return S3BlobStore(
            bucket=settings.s3_bucket,
            endpoint=settings.s3_endpoint or None,
            region=settings.s3_region,
            credentials=credentials,
            part_size=settings.s3_part_size,
        )
    return LocalBlobStore(settings.blob_dir, incomplete_grace_seconds=settings.incomplete_upload_grace_seconds)
