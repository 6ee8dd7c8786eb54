"""Sealed secrets: round trip, binding to purpose and context, key rotation,
tampering, opaque keys, key files."""

from __future__ import annotations

import base64
import copy
import pickle
import stat
from pathlib import Path

import pytest

from carevault_crypto import DecryptionError, InvalidKeyFormat
from carevault_crypto.sealed import SealingKey, SecretSealer, is_sealed


def test_round_trip_and_fresh_nonces() -> None:
    sealer = SecretSealer(SealingKey.generate())
    first = sealer.seal(b"JBSWY3DPEHPK3PXP", purpose="api/totp-secret", context="user-1")
    second = sealer.seal(b"JBSWY3DPEHPK3PXP", purpose="api/totp-secret", context="user-1")
    assert first != second and is_sealed(first)
    assert b"JBSWY3DPEHPK3PXP" not in base64.urlsafe_b64decode(first.split(".")[2] + "==")
    assert sealer.open(first, purpose="api/totp-secret", context="user-1") == b"JBSWY3DPEHPK3PXP"
    assert sealer.open(sealer.seal(b"", purpose="p", context="c"), purpose="p", context="c") == b""


@pytest.mark.parametrize(("purpose", "context"), [("api/signing-key", "user-1"), ("api/totp-secret", "user-2")])
def test_a_value_opens_only_for_its_purpose_and_context(purpose: str, context: str) -> None:
    sealer = SecretSealer(SealingKey.generate())
    sealed = sealer.seal(b"secret", purpose="api/totp-secret", context="user-1")
    with pytest.raises(DecryptionError):
        sealer.open(sealed, purpose=purpose, context=context)


def test_another_key_does_not_open_it() -> None:
    sealed = SecretSealer(SealingKey.generate()).seal(b"secret", purpose="p", context="c")
    with pytest.raises(DecryptionError):
        SecretSealer(SealingKey.generate()).open(sealed, purpose="p", context="c")


def test_rotation_opens_with_a_previous_key_and_reseals_with_the_current_one() -> None:
    old, new = SealingKey.generate(), SealingKey.generate()
    sealed = SecretSealer(old).seal(b"secret", purpose="p", context="c")
    rotated = SecretSealer(new, previous=[old])
    assert rotated.needs_resealing(sealed)
    assert rotated.open(sealed, purpose="p", context="c") == b"secret"
    resealed = rotated.seal(b"secret", purpose="p", context="c")
    assert not rotated.needs_resealing(resealed)
    assert SecretSealer(new).open(resealed, purpose="p", context="c") == b"secret"
    assert rotated.needs_resealing("JBSWY3DPEHPK3PXP")  # a value stored before sealing


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampering_is_detected(position: int) -> None:
    sealer = SecretSealer(SealingKey.generate())
    sealed = sealer.seal(b"secret value", purpose="p", context="c")
    prefix, key_id, body = sealed.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=="))
    raw[position] ^= 0x01
    forged = f"{prefix}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"
    with pytest.raises(DecryptionError):
        sealer.open(forged, purpose="p", context="c")


@pytest.mark.parametrize("garbage", ["", "cvs1", "cvs1.x.y", "cvs2.a.b", "cvs1..", "plain-text-secret"])
def test_garbage_is_refused_with_the_one_error(garbage: str) -> None:
    with pytest.raises(DecryptionError):
        SecretSealer(SealingKey.generate()).open(garbage, purpose="p", context="c")


def test_keys_are_opaque() -> None:
    key = SealingKey.generate()
    assert repr(key) == str(key) == f"{key}" == "***"
    for leak in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            leak(key)
    with pytest.raises(TypeError):
        SealingKey(b"\x00" * 32)


def test_key_files(tmp_path: Path) -> None:
    path = tmp_path / "sealing.key"
    SealingKey.generate_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        SealingKey.generate_file(path)
    key = SealingKey.from_file(path)
    assert SealingKey.from_file(path).key_id == key.key_id
    sealed = SecretSealer(key).seal(b"x", purpose="p", context="c")
    assert SecretSealer(SealingKey.from_file(path)).open(sealed, purpose="p", context="c") == b"x"
    for bad in ("", "too-short", base64.urlsafe_b64encode(b"\x00" * 31).decode()):
        (tmp_path / "bad.key").write_text(bad)
        with pytest.raises(InvalidKeyFormat):
            SealingKey.from_file(tmp_path / "bad.key")
