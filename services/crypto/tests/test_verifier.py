"""Key verifier."""

from __future__ import annotations

import hmac

import pytest
from crypto_helpers import flips

from carevault_crypto import PatientContext, PatientKey, create_verifier, verify_patient_key
from carevault_crypto.verifier import VERIFIER_SIZE


def test_verifier_accepts_right_key(patient_key: PatientKey, ctx: PatientContext) -> None:
    verifier = create_verifier(patient_key, ctx)
    assert len(verifier) == VERIFIER_SIZE == 49
    assert verifier[0] == 1
    assert verify_patient_key(patient_key, ctx, verifier) is True


def test_verifier_is_salted(patient_key: PatientKey, ctx: PatientContext) -> None:
    assert create_verifier(patient_key, ctx) != create_verifier(patient_key, ctx)


def test_verifier_rejects_wrong_key_and_context(patient_key: PatientKey, ctx: PatientContext) -> None:
    verifier = create_verifier(patient_key, ctx)
    assert verify_patient_key(PatientKey.generate(), ctx, verifier) is False
    assert verify_patient_key(patient_key, PatientContext("tenant-a", "patient-2"), verifier) is False
    assert verify_patient_key(patient_key, PatientContext("tenant-b", "patient-1"), verifier) is False


def test_verifier_rejects_every_flip_and_bad_lengths(patient_key: PatientKey, ctx: PatientContext) -> None:
    verifier = create_verifier(patient_key, ctx)
    for _, altered in flips(verifier):
        assert verify_patient_key(patient_key, ctx, altered) is False
    for cut in range(len(verifier)):
        assert verify_patient_key(patient_key, ctx, verifier[:cut]) is False
    assert verify_patient_key(patient_key, ctx, verifier + b"\x00") is False


def test_verifier_uses_constant_time_compare(patient_key: PatientKey, ctx: PatientContext, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = create_verifier(patient_key, ctx)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_patient_key(patient_key, ctx, verifier) is True
    assert verify_patient_key(PatientKey.generate(), ctx, verifier) is False
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)
