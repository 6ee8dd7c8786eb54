"""Generate the checked-in test vectors (tests/vectors/*.json) deterministically.

Run from services/crypto: ``python tests/make_vectors.py``. Then review the diff:
any change to a vector file is a change of an on-disk format and must come with a
new format version, never silently. ``tests/test_vectors.py`` decrypts every vector
and re-runs this generator, comparing the output byte for byte.

Randomness is made deterministic by patching the private hook
``carevault_crypto._primitives._random_bytes`` with a SHA-256 counter stream under
a fixed seed (one stream per file, so adding a file does not change the others).
There is no public way to inject a nonce or randomness.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from carevault_crypto import (
    FileKey,
    PatientContext,
    PatientKey,
    PatientKeyring,
    RecordContext,
    StreamingEncryptor,
    _primitives,
    create_verifier,
)
from carevault_crypto.export import file_key_to_transport, patient_key_to_header

SEED = b"carevault crypto test vectors, seed 1"
VECTOR_DIR = Path(__file__).parent / "vectors"
Json = dict[str, object]


@contextmanager
def deterministic_randomness(label: str) -> Iterator[None]:
    """Patch the private randomness hook with a seeded SHA-256 counter stream."""
    state = {"counter": 0}

    def fake_random_bytes(n: int) -> bytes:
        out = b""
        while len(out) < n:
            block = SEED + label.encode() + state["counter"].to_bytes(8, "big")
            out += hashlib.sha256(block).digest()
            state["counter"] += 1
        return out[:n]

    original = _primitives._random_bytes
    _primitives._random_bytes = fake_random_bytes
    try:
        yield
    finally:
        _primitives._random_bytes = original


def sample(size: int) -> bytes:
    """Deterministic plaintext of ``size`` bytes."""
    return bytes((i * 31 + 7) % 256 for i in range(size))


CTX = PatientContext("tenant-demo", "patient-0001")


def _keyring() -> tuple[PatientKey, PatientKeyring, bytes]:
    patient_key = PatientKey.generate()
    keyring, wrapped = PatientKeyring.create(patient_key, CTX)
    return patient_key, keyring, wrapped


def _patient(patient_key: PatientKey, wrapped: bytes) -> Json:
    return {
        "patient_key": patient_key_to_header(patient_key),
        "tenant": CTX.tenant,
        "patient_id": CTX.patient_id,
        "wrapped_keyring": wrapped.hex(),
    }


def verifier_vectors() -> Json:
    cases = []
    for tenant, patient_id in (("tenant-demo", "patient-0001"), ("t\u00e9nant", "p|2")):
        patient_key = PatientKey.generate()
        ctx = PatientContext(tenant, patient_id)
        cases.append(
            {
                "patient_key": patient_key_to_header(patient_key),
                "tenant": tenant,
                "patient_id": patient_id,
                "verifier": create_verifier(patient_key, ctx).hex(),
            }
        )
    return {"format": "verifier v1: 0x01 | salt(16) | tag(32)", "cases": cases}


def keyring_vectors() -> Json:
    patient_key, keyring, wrapped = _keyring()
    new_key = PatientKey.generate()
    return {
        "format": "keyring v1: 0x01|key id(4)|salt(16)|nonce(12)|ct(32)|tag(16)|commit(32)",
        **_patient(patient_key, wrapped),
        "key_id": keyring.key_id,
        "rotated_patient_key": patient_key_to_header(new_key),
        "rewrapped_keyring": keyring.rewrap(new_key).hex(),
    }


def record_vectors() -> Json:
    patient_key, keyring, wrapped = _keyring()
    cases = []
    for size, record_id, version, resource_type in (
        (0, "rec-0", 0, "Observation"),
        (1, "rec-1", 1, "Patient"),
        (64, "r\u00e9c-2", 7, "Condition"),
        (1024, "rec-3", 2**40, "DocumentReference"),
    ):
        rc = RecordContext(CTX.tenant, CTX.patient_id, record_id, version, resource_type)
        plaintext = sample(size)
        cases.append(
            {
                "record_id": record_id,
                "version": version,
                "resource_type": resource_type,
                "plaintext": plaintext.hex(),
                "blob": keyring.seal_record(plaintext, rc).hex(),
            }
        )
    return {
        "format": "record v1: 0x01|key id(4)|wrapped DEK(60)|nonce(12)|ct|tag(16)|commit(32)",
        **_patient(patient_key, wrapped),
        "cases": cases,
    }


def blind_index_vectors() -> Json:
    patient_key, keyring, wrapped = _keyring()
    pairs = [
        ("identifier", "urn:oid:1.2.250.1.213.1.4.8|1234567890123"),
        ("birthdate", "1970-01-31"),
        ("code", "http://loinc.org|718-7"),
        ("family", ""),
    ]
    cases = [{"param": p, "value": v, "token": keyring.blind_index(p, v)} for p, v in pairs]
    return {
        "format": "blind index v1: base64url(0x01 | HMAC-SHA-256[:16])",
        **_patient(patient_key, wrapped),
        "cases": cases,
    }


def file_key_vectors() -> Json:
    patient_key, keyring, wrapped = _keyring()
    cases = []
    for associated in (b"", bytes(range(16)), b"file:0001"):
        file_key = FileKey.generate()
        cases.append(
            {
                "associated": associated.hex(),
                "file_key": file_key_to_transport(file_key),
                "wrapped": keyring.wrap_file_key(file_key, associated).hex(),
            }
        )
    return {
        "format": "file key v1: 0x01|key id(4)|nonce(12)|ct(32)|tag(16)|commit(32)",
        **_patient(patient_key, wrapped),
        "cases": cases,
    }


def streaming_vectors() -> Json:
    cases = []
    for segment_size, size in (
        (4096, 0),
        (4096, 1),
        (4096, 4095),
        (4096, 4096),
        (4096, 4097),
        (4096, 2 * 4096 + 5),
        (65536, 100),
        (1048576, 0),
    ):
        file_key = FileKey.generate()
        associated = f"file-{segment_size}-{size}".encode()
        enc = StreamingEncryptor(file_key, associated, segment_size=segment_size)
        plaintext = sample(size)
        stored = enc.header + enc.update(plaintext) + enc.finalize()
        cases.append(
            {
                "file_key": file_key_to_transport(file_key),
                "associated": associated.hex(),
                "segment_size": segment_size,
                "plaintext": plaintext.hex(),
                "ciphertext": stored.hex(),
            }
        )
    return {
        "format": "stream v1: header(73) | segments (AES-256-GCM, 16-byte tag each)",
        "cases": cases,
    }


GENERATORS: dict[str, Callable[[], Json]] = {
    "verifier": verifier_vectors,
    "keyring": keyring_vectors,
    "records": record_vectors,
    "blind_index": blind_index_vectors,
    "file_keys": file_key_vectors,
    "streaming": streaming_vectors,
}


def build_vectors() -> dict[str, str]:
    """File name -> exact file contents."""
    out = {}
    for name, generate in GENERATORS.items():
        with deterministic_randomness(name):
            doc = generate()
        out[f"{name}.json"] = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    return out


def main() -> None:
    VECTOR_DIR.mkdir(exist_ok=True)
    for file_name, text in build_vectors().items():
        (VECTOR_DIR / file_name).write_text(text, encoding="utf-8")
        print(f"wrote {VECTOR_DIR / file_name}")


if __name__ == "__main__":
    main()
