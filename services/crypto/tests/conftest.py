"""Shared fixtures for the carevault_crypto tests."""

from __future__ import annotations

import pytest

from carevault_crypto import PatientContext, PatientKey, PatientKeyring, RecordContext


@pytest.fixture
def ctx() -> PatientContext:
    return PatientContext("tenant-a", "patient-1")


@pytest.fixture
def rc() -> RecordContext:
    return RecordContext("tenant-a", "patient-1", "record-1", 3, "Observation")


@pytest.fixture
def patient_key() -> PatientKey:
    return PatientKey.generate()


@pytest.fixture
def keyring_and_wrapped(patient_key: PatientKey, ctx: PatientContext) -> tuple[PatientKeyring, bytes]:
    return PatientKeyring.create(patient_key, ctx)


@pytest.fixture
def keyring(keyring_and_wrapped: tuple[PatientKeyring, bytes]) -> PatientKeyring:
    return keyring_and_wrapped[0]
