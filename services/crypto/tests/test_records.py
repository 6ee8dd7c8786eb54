"""Record AEAD: round trips, fresh DEKs, tamper and context-swap detection."""

from __future__ import annotations

import dataclasses

import pytest
from crypto_helpers import flips

from carevault_crypto import (
    DecryptionError,
    PatientContext,
    PatientKey,
    PatientKeyring,
    RecordContext,
)
from carevault_crypto._record_blob import OVERHEAD


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1024, 100_000])
def test_round_trip(keyring: PatientKeyring, rc: RecordContext, size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    blob = keyring.seal_record(body, rc)
    assert len(blob) == size + OVERHEAD == size + 125
    assert blob[0] == 1
    assert blob[1:5].hex() == keyring.key_id
    assert keyring.open_record(blob, rc) == body


def test_bytes_like_input(keyring: PatientKeyring, rc: RecordContext) -> None:
    blob = keyring.seal_record(bytearray(b"abc"), rc)  # type: ignore[arg-type]
    assert keyring.open_record(memoryview(blob), rc) == b"abc"  # type: ignore[arg-type]


def test_fresh_dek_and_nonce_every_call(keyring: PatientKeyring, rc: RecordContext) -> None:
    first = keyring.seal_record(b"same", rc)
    second = keyring.seal_record(b"same", rc)
    assert first != second
    assert first[5:65] != second[5:65]  # wrapped DEK
    assert first[65:77] != second[65:77]  # body nonce


def test_every_flip_detected(keyring: PatientKeyring, rc: RecordContext) -> None:
    blob = keyring.seal_record(b"a small FHIR resource", rc)
    for position, altered in flips(blob):
        with pytest.raises(DecryptionError, match=r"^decryption failed$"):
            keyring.open_record(altered, rc)
        assert position >= 0


def test_truncation_and_extension_detected(keyring: PatientKeyring, rc: RecordContext) -> None:
    blob = keyring.seal_record(b"body", rc)
    for cut in range(len(blob)):
        with pytest.raises(DecryptionError):
            keyring.open_record(blob[:cut], rc)
    with pytest.raises(DecryptionError):
        keyring.open_record(blob + b"\x00", rc)


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "tenant-b"},
        {"patient_id": "patient-2"},
        {"record_id": "record-2"},
        {"version": 4},
        {"resource_type": "Condition"},
    ],
)
def test_context_swap_detected(keyring: PatientKeyring, rc: RecordContext, change: dict[str, object]) -> None:
    blob = keyring.seal_record(b"body", rc)
    with pytest.raises(DecryptionError):
        keyring.open_record(blob, dataclasses.replace(rc, **change))  # type: ignore[arg-type]


def test_wrong_keyring_detected(keyring: PatientKeyring, rc: RecordContext, patient_key: PatientKey, ctx: PatientContext) -> None:
    blob = keyring.seal_record(b"body", rc)
    other, _ = PatientKeyring.create(patient_key, ctx)  # same patient, another master key
    with pytest.raises(DecryptionError):
        other.open_record(blob, rc)


def test_cross_patient_replay_detected(keyring: PatientKeyring, rc: RecordContext) -> None:
    """A blob moved to another patient's row fails even with that patient's keyring."""
    other_ctx = PatientContext("tenant-a", "patient-2")
    other, _ = PatientKeyring.create(PatientKey.generate(), other_ctx)
    blob = keyring.seal_record(b"body", rc)
    with pytest.raises(DecryptionError):
        other.open_record(blob, dataclasses.replace(rc, patient_id="patient-2"))


def test_seal_refuses_context_of_another_patient(keyring: PatientKeyring, rc: RecordContext) -> None:
    with pytest.raises(ValueError, match="another patient"):
        keyring.seal_record(b"x", dataclasses.replace(rc, patient_id="patient-2"))


def test_version_byte_is_checked(keyring: PatientKeyring, rc: RecordContext) -> None:
    blob = bytearray(keyring.seal_record(b"x", rc))
    blob[0] = 2
    with pytest.raises(DecryptionError):
        keyring.open_record(bytes(blob), rc)
