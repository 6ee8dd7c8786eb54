"""Blind indexes."""

from __future__ import annotations

import base64

from carevault_crypto import PatientContext, PatientKey, PatientKeyring


def test_deterministic_and_shaped(keyring: PatientKeyring) -> None:
    token = keyring.blind_index("identifier", "urn:oid:1.2|123")
    assert token == keyring.blind_index("identifier", "urn:oid:1.2|123")
    assert len(token) == 23
    raw = base64.urlsafe_b64decode(token + "=")
    assert len(raw) == 17
    assert raw[0] == 1


def test_separates_params_and_values(keyring: PatientKeyring) -> None:
    tokens = {
        keyring.blind_index("identifier", "123"),
        keyring.blind_index("identifier", "124"),
        keyring.blind_index("code", "123"),
        keyring.blind_index("identifier1", "23"),
        keyring.blind_index("identifier", ""),
    }
    assert len(tokens) == 5


def test_per_patient(keyring: PatientKeyring) -> None:
    other, _ = PatientKeyring.create(PatientKey.generate(), PatientContext("tenant-a", "patient-2"))
    assert other.blind_index("identifier", "123") != keyring.blind_index("identifier", "123")


def test_survives_client_key_rotation(keyring: PatientKeyring, ctx: PatientContext) -> None:
    new_key = PatientKey.generate()
    reopened = PatientKeyring.open(new_key, ctx, keyring.rewrap(new_key))
    assert reopened.blind_index("date", "2024-01-31") == keyring.blind_index("date", "2024-01-31")
