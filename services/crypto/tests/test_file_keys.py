"""File-key wrapping under the patient keyring."""

from __future__ import annotations

import pytest
from crypto_helpers import flips

from carevault_crypto import DecryptionError, FileKey, PatientContext, PatientKey, PatientKeyring
from carevault_crypto.export import file_key_to_transport
from carevault_crypto.keyring import WRAPPED_FILE_KEY_SIZE

FILE_ID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def test_wrap_unwrap(keyring: PatientKeyring) -> None:
    file_key = FileKey.generate()
    blob = keyring.wrap_file_key(file_key, FILE_ID)
    assert len(blob) == WRAPPED_FILE_KEY_SIZE == 97
    assert blob[0] == 1
    assert blob[1:5].hex() == keyring.key_id
    unwrapped = keyring.unwrap_file_key(blob, FILE_ID)
    assert file_key_to_transport(unwrapped) == file_key_to_transport(file_key)
    assert keyring.wrap_file_key(file_key, FILE_ID) != blob


def test_survives_rotation(keyring: PatientKeyring, ctx: PatientContext) -> None:
    file_key = FileKey.generate()
    blob = keyring.wrap_file_key(file_key, FILE_ID)
    new_key = PatientKey.generate()
    reopened = PatientKeyring.open(new_key, ctx, keyring.rewrap(new_key))
    assert file_key_to_transport(reopened.unwrap_file_key(blob, FILE_ID)) == file_key_to_transport(file_key)


def test_binding_and_tampering(keyring: PatientKeyring) -> None:
    blob = keyring.wrap_file_key(FileKey.generate(), FILE_ID)
    with pytest.raises(DecryptionError):
        keyring.unwrap_file_key(blob, FILE_ID[:-1] + b"\x00")
    with pytest.raises(DecryptionError):
        keyring.unwrap_file_key(blob, b"")
    for _, altered in flips(blob):
        with pytest.raises(DecryptionError):
            keyring.unwrap_file_key(altered, FILE_ID)
    for cut in range(len(blob)):
        with pytest.raises(DecryptionError):
            keyring.unwrap_file_key(blob[:cut], FILE_ID)


def test_other_patient_cannot_unwrap(keyring: PatientKeyring, ctx: PatientContext) -> None:
    blob = keyring.wrap_file_key(FileKey.generate(), FILE_ID)
    for other_ctx in (ctx, PatientContext("tenant-a", "patient-2")):
        other, _ = PatientKeyring.create(PatientKey.generate(), other_ctx)
        with pytest.raises(DecryptionError):
            other.unwrap_file_key(blob, FILE_ID)
