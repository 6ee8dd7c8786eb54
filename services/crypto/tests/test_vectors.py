"""Checked-in test vectors: every vector decrypts, and regeneration is byte-identical."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import make_vectors
import pytest

from carevault_crypto import (
    DecryptionError,
    FileKey,
    PatientContext,
    PatientKey,
    PatientKeyring,
    RecordContext,
    StreamingDecryptor,
    _primitives,
    verify_patient_key,
)
from carevault_crypto.export import file_key_to_transport
from carevault_crypto.streaming import HEADER_SIZE


def load(name: str) -> Any:
    return json.loads((make_vectors.VECTOR_DIR / f"{name}.json").read_text(encoding="utf-8"))


def open_keyring(doc: dict[str, Any]) -> PatientKeyring:
    ctx = PatientContext(doc["tenant"], doc["patient_id"])
    key = PatientKey.from_header(doc["patient_key"])
    return PatientKeyring.open(key, ctx, bytes.fromhex(doc["wrapped_keyring"]))


def test_regeneration_is_byte_identical() -> None:
    generated = make_vectors.build_vectors()
    on_disk = {p.name for p in make_vectors.VECTOR_DIR.glob("*.json")}
    assert on_disk == set(generated)
    for file_name, text in generated.items():
        stored = (make_vectors.VECTOR_DIR / file_name).read_text(encoding="utf-8")
        assert stored == text, f"{file_name} changed: on-disk format drift (see make_vectors.py)"


def test_generator_restores_real_randomness() -> None:
    make_vectors.build_vectors()
    assert _primitives._random_bytes is os.urandom


def test_verifier_vectors() -> None:
    for case in load("verifier")["cases"]:
        ctx = PatientContext(case["tenant"], case["patient_id"])
        key = PatientKey.from_header(case["patient_key"])
        assert verify_patient_key(key, ctx, bytes.fromhex(case["verifier"]))
        assert not verify_patient_key(PatientKey.generate(), ctx, bytes.fromhex(case["verifier"]))


def test_keyring_vectors() -> None:
    doc = load("keyring")
    keyring = open_keyring(doc)
    assert keyring.key_id == doc["key_id"]
    rotated = PatientKeyring.open(
        PatientKey.from_header(doc["rotated_patient_key"]),
        keyring.context,
        bytes.fromhex(doc["rewrapped_keyring"]),
    )
    assert rotated.key_id == doc["key_id"]


def test_record_vectors() -> None:
    doc = load("records")
    keyring = open_keyring(doc)
    for case in doc["cases"]:
        rc = RecordContext(
            doc["tenant"],
            doc["patient_id"],
            case["record_id"],
            case["version"],
            case["resource_type"],
        )
        blob = bytes.fromhex(case["blob"])
        assert keyring.open_record(blob, rc) == bytes.fromhex(case["plaintext"])
        with pytest.raises(DecryptionError):
            keyring.open_record(blob, dataclasses.replace(rc, version=rc.version + 1))


def test_blind_index_vectors() -> None:
    doc = load("blind_index")
    keyring = open_keyring(doc)
    for case in doc["cases"]:
        assert keyring.blind_index(case["param"], case["value"]) == case["token"]


def test_file_key_vectors() -> None:
    doc = load("file_keys")
    keyring = open_keyring(doc)
    for case in doc["cases"]:
        unwrapped = keyring.unwrap_file_key(bytes.fromhex(case["wrapped"]), bytes.fromhex(case["associated"]))
        assert file_key_to_transport(unwrapped) == case["file_key"]


@pytest.mark.parametrize("index", range(8))
def test_streaming_vectors(index: int) -> None:
    case = load("streaming")["cases"][index]
    stored = bytes.fromhex(case["ciphertext"])
    dec = StreamingDecryptor(
        FileKey.from_transport(case["file_key"]),
        bytes.fromhex(case["associated"]),
        stored[:HEADER_SIZE],
    )
    assert dec.update(stored[HEADER_SIZE:]) + dec.finalize() == bytes.fromhex(case["plaintext"])
