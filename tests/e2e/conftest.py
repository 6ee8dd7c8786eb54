"""Fixtures shared by the end-to-end tests: a FHIR client on the running mesh
(development token) and a fresh patient with its key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.test_records import create_patient
from tests.support import RunningMesh, new_patient_key


@pytest.fixture
async def fhir(mesh: RunningMesh) -> AsyncIterator[httpx.AsyncClient]:
    # Long enough for the 50 MiB Binary round trips; a hang still ends at the
    # per-test timeout.
    async with mesh.fhir(timeout=300) as client:
        yield client


@pytest.fixture
async def patient(fhir: httpx.AsyncClient) -> tuple[str, str]:
    """(patient key, patient id) of a new patient."""
    key = new_patient_key()
    return key, await create_patient(fhir, key)
