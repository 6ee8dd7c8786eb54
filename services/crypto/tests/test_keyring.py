"""Wrapped master key: create, open, rewrap (rotation), key commitment."""

from __future__ import annotations

import hmac

import pytest
from crypto_helpers import flips

from carevault_crypto import (
    DecryptionError,
    PatientContext,
    PatientKey,
    PatientKeyring,
    RecordContext,
)
from carevault_crypto.keyring import WRAPPED_KEYRING_SIZE


def test_create_and_open(patient_key: PatientKey, ctx: PatientContext, rc: RecordContext) -> None:
    keyring, wrapped = PatientKeyring.create(patient_key, ctx)
    assert len(wrapped) == WRAPPED_KEYRING_SIZE == 113
    assert wrapped[0] == 1
    assert wrapped[1:5].hex() == keyring.key_id
    opened = PatientKeyring.open(patient_key, ctx, wrapped)
    assert opened.key_id == keyring.key_id
    assert opened.context == ctx
    assert opened.open_record(keyring.seal_record(b"x", rc), rc) == b"x"


def test_each_patient_gets_a_new_master_key(patient_key: PatientKey, ctx: PatientContext) -> None:
    first, _ = PatientKeyring.create(patient_key, ctx)
    second, _ = PatientKeyring.create(patient_key, ctx)
    assert first.key_id != second.key_id


def test_open_rejects_wrong_key_and_context(keyring_and_wrapped: tuple[PatientKeyring, bytes], patient_key: PatientKey) -> None:
    _, wrapped = keyring_and_wrapped
    with pytest.raises(DecryptionError):
        PatientKeyring.open(PatientKey.generate(), PatientContext("tenant-a", "patient-1"), wrapped)
    for other in (PatientContext("tenant-a", "patient-2"), PatientContext("tenant-b", "patient-1")):
        with pytest.raises(DecryptionError):
            PatientKeyring.open(patient_key, other, wrapped)


def test_open_rejects_every_flip_and_truncation(
    keyring_and_wrapped: tuple[PatientKeyring, bytes], patient_key: PatientKey, ctx: PatientContext
) -> None:
    _, wrapped = keyring_and_wrapped
    for _, altered in flips(wrapped):
        with pytest.raises(DecryptionError):
            PatientKeyring.open(patient_key, ctx, altered)
    for cut in range(len(wrapped)):
        with pytest.raises(DecryptionError):
            PatientKeyring.open(patient_key, ctx, wrapped[:cut])
    with pytest.raises(DecryptionError):
        PatientKeyring.open(patient_key, ctx, wrapped + b"\x00")


def test_rewrap_rotates_client_key_without_touching_data(
    keyring_and_wrapped: tuple[PatientKeyring, bytes],
    patient_key: PatientKey,
    ctx: PatientContext,
    rc: RecordContext,
) -> None:
    keyring, _ = keyring_and_wrapped
    record = keyring.seal_record(b"body", rc)
    token = keyring.blind_index("identifier", "123")
    new_key = PatientKey.generate()
    rewrapped = keyring.rewrap(new_key)
    reopened = PatientKeyring.open(new_key, ctx, rewrapped)
    assert reopened.key_id == keyring.key_id
    assert reopened.open_record(record, rc) == b"body"
    assert reopened.blind_index("identifier", "123") == token
    with pytest.raises(DecryptionError):
        PatientKeyring.open(patient_key, ctx, rewrapped)


def test_commitment_checked_before_decryption(
    keyring_and_wrapped: tuple[PatientKeyring, bytes],
    patient_key: PatientKey,
    ctx: PatientContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a wrong key, the commitment (constant-time compare) refuses first."""
    from cryptography.hazmat.primitives.ciphers import aead

    _, wrapped = keyring_and_wrapped
    decrypts: list[int] = []
    compares: list[int] = []
    real_compare = hmac.compare_digest

    def spy_compare(a: bytes, b: bytes) -> bool:
        compares.append(1)
        return real_compare(a, b)

    real_decrypt = aead.AESGCM.decrypt

    def spy_decrypt(self: aead.AESGCM, nonce: bytes, data: bytes, ad: bytes | None) -> bytes:
        decrypts.append(1)
        return real_decrypt(self, nonce, data, ad)

    monkeypatch.setattr(hmac, "compare_digest", spy_compare)
    monkeypatch.setattr(aead.AESGCM, "decrypt", spy_decrypt)
    with pytest.raises(DecryptionError):
        PatientKeyring.open(PatientKey.generate(), ctx, wrapped)
    assert compares
    assert decrypts == []
    PatientKeyring.open(patient_key, ctx, wrapped)
    assert decrypts == [1]
