"""Fixtures for the doctor's tool tests.

A doctor key pair is represented by the path of its private key file; the public key
file is next to it with ``.pub`` appended, as ``keygen`` writes it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from carevault_crypto import PatientKey
from carevault_crypto.escrow import (
    DoctorPublicKey,
    EscrowContext,
    EscrowSuite,
    generate_doctor_key,
    seal_escrow,
)

PASSPHRASE = "a long enough test passphrase"

Seal = Callable[[Path, EscrowContext], tuple[bytes, PatientKey]]


def _fast_key_files(directory: Path, suite: EscrowSuite) -> Path:
    """Key files as keygen writes them, but with a cheap scrypt so tests run fast.

    keygen itself (production cost) is exercised by test_cli and test_subprocess.
    """
    key = generate_doctor_key(suite)
    private = directory / f"doctor-{suite.value}-{key.key_id[:8]}.key"
    private.write_text(key.to_encrypted_text(PASSPHRASE, _log2_n=14), encoding="utf-8")
    private.chmod(0o600)
    public = private.with_name(private.name + ".pub")
    public.write_text(key.public_key().to_text(), encoding="utf-8")
    return private


@pytest.fixture(scope="session")
def passphrase() -> str:
    return PASSPHRASE


@pytest.fixture(scope="session")
def passphrase_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "passphrase"
    path.write_text(PASSPHRASE + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def wrong_passphrase_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "wrong-passphrase"
    path.write_text("not the right passphrase\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def doctors(tmp_path_factory: pytest.TempPathFactory) -> dict[EscrowSuite, Path]:
    """One key pair per suite: suite -> private key file."""
    directory = tmp_path_factory.mktemp("doctor")
    return {suite: _fast_key_files(directory, suite) for suite in EscrowSuite}


@pytest.fixture(scope="session")
def second_hybrid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another hybrid key pair, as after a rotation."""
    return _fast_key_files(tmp_path_factory.mktemp("rotated"), EscrowSuite.HYBRID)


def public_key_of(private: Path) -> DoctorPublicKey:
    return DoctorPublicKey.from_text(private.with_name(private.name + ".pub").read_text())


@pytest.fixture(scope="session")
def public_of() -> Callable[[Path], DoctorPublicKey]:
    """The public key next to a private key file."""
    return public_key_of


@pytest.fixture(scope="session")
def seal() -> Seal:
    """Seal a fresh patient key to the public key next to a private key file."""

    def _seal(private: Path, ctx: EscrowContext) -> tuple[bytes, PatientKey]:
        key = PatientKey.generate()
        return seal_escrow(public_key_of(private), key, ctx), key

    return _seal


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open a socket fail the test loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the doctor's tool tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
