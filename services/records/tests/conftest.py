"""Shared fixtures of the records service tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# services/records/tests/conftest.py -> parents[3] is the repository root
# (/work/main in production, a worktree in development), beside ../shared.
_SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def shared_data_dir() -> Path:
    """``<repo>/../shared/data``; skips the test when absent, fails when CI=true."""
    path = _SHARED_DATA.resolve()
    if (path / "fhir").is_dir():
        return path
    message = f"shared test data not found at {path} (expected at <repository>/../shared/data)"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()
