"""Break-glass request documents' file keys at rest in api's database: sealed, bound
to their blob, and resealed at start after a rotation of API_SECRETS_KEY_FILE (so
the previous key can be dropped)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carevault_api.break_glass import repository
from carevault_api.break_glass.documents import DOCUMENT_KEY, reseal_keys
from carevault_api.models_break_glass import BreakGlassDocument
from carevault_api.secrets import Secrets
from carevault_common.db import create_engine, session_factory, session_scope
from carevault_crypto import DecryptionError
from carevault_crypto.sealed import SealingKey, SecretSealer

FILE_KEY = "AQ" + "x" * 42  # the shape of a transport file key; its value does not matter here


async def test_file_keys_are_resealed_under_the_new_key(api_database: str) -> None:
    old, new = SealingKey.generate(), SealingKey.generate()
    before = Secrets(SecretSealer(old))
    engine = create_engine(api_database)
    sessions = session_factory(engine)
    try:
        async with session_scope(sessions) as session:
            for n in range(2):
                await repository.add_document(
                    session,
                    BreakGlassDocument(
                        request_id=f"req-{n}",
                        blob_id=f"blob-{n}",
                        sealed_file_key=before.seal(FILE_KEY, purpose=DOCUMENT_KEY, owner=f"blob-{n}"),
                        sha256="0" * 64,
                        content_type="application/pdf",
                        size=1,
                        created_at=datetime.now(UTC),
                    ),
                )
        rotating = Secrets(SecretSealer(new, [old]))
        assert await reseal_keys(sessions, rotating) == 2
        assert await reseal_keys(sessions, rotating) == 0
        after = Secrets(SecretSealer(new))
        async with session_scope(sessions) as session:
            stored = {d.blob_id: d.sealed_file_key for d in await repository.all_documents(session)}
        for blob_id, sealed in stored.items():
            assert FILE_KEY not in sealed
            assert after.open(sealed, purpose=DOCUMENT_KEY, owner=blob_id) == FILE_KEY
            with pytest.raises(DecryptionError):
                before.open(sealed, purpose=DOCUMENT_KEY, owner=blob_id)
        # Bound to its blob: a key moved to another document's row does not open.
        with pytest.raises(DecryptionError):
            after.open(stored["blob-0"], purpose=DOCUMENT_KEY, owner="blob-1")
    finally:
        await engine.dispose()
