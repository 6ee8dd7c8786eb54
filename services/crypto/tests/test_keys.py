"""Opaque key objects: parsing, export, no leaks, no pickling."""

from __future__ import annotations

import base64
import copy
import logging
import pickle

import pytest

from carevault_crypto import (
    FileKey,
    InvalidKeyFormat,
    PatientContext,
    PatientKey,
    PatientKeyring,
    RandomAccessDecryptor,
    StreamingDecryptor,
    StreamingEncryptor,
    _primitives,
)
from carevault_crypto.checkpoint import generate_checkpoint_signer
from carevault_crypto.export import file_key_to_transport, patient_key_to_header
from carevault_crypto.pseudonym import PseudonymKey
from carevault_crypto.sealed import SealingKey


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_patient_key_header_round_trip() -> None:
    key = PatientKey.generate()
    header = patient_key_to_header(key)
    assert len(header) == 43
    assert patient_key_to_header(PatientKey.from_header(header)) == header


def test_generated_keys_differ() -> None:
    assert patient_key_to_header(PatientKey.generate()) != patient_key_to_header(PatientKey.generate())


@pytest.mark.parametrize(
    "value",
    [
        "",
        _b64(bytes(31)),
        _b64(bytes(33)),
        _b64(bytes(32)) + "=",  # padding
        base64.b64encode(bytes(range(200, 232))).decode().rstrip("="),  # '+' '/' alphabet
        " " + _b64(bytes(32))[1:],
        _b64(bytes(32))[:-1] + "B",  # non-canonical: non-zero unused bits
        _b64(bytes(32))[:-1] + "\u00e9",
        "A" * 42 + "\n",
    ],
)
def test_patient_key_from_header_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidKeyFormat) as info:
        PatientKey.from_header(value)
    assert isinstance(info.value, ValueError)
    if value.strip():
        assert value.strip() not in str(info.value)


def test_invalid_key_message_never_contains_input() -> None:
    secretish = _b64(b"very-secret-patient-key-material!")  # 33 bytes
    with pytest.raises(InvalidKeyFormat) as info:
        PatientKey.from_header(secretish)
    assert secretish not in str(info.value)
    assert secretish[:10] not in repr(info.value)


def test_from_header_rejects_non_str() -> None:
    with pytest.raises(InvalidKeyFormat):
        PatientKey.from_header(_b64(bytes(32)).encode())  # type: ignore[arg-type]


def test_file_key_transport_round_trip_and_versioned() -> None:
    key = FileKey.generate()
    text = file_key_to_transport(key)
    assert len(text) == 44
    assert base64.urlsafe_b64decode(text)[0] == 1
    assert file_key_to_transport(FileKey.from_transport(text)) == text


def test_file_key_transport_rejects_patient_key_and_bad_version() -> None:
    with pytest.raises(InvalidKeyFormat):
        FileKey.from_transport(patient_key_to_header(PatientKey.generate()))
    with pytest.raises(InvalidKeyFormat):
        FileKey.from_transport(_b64(b"\x02" + bytes(32)))
    with pytest.raises(InvalidKeyFormat):
        PatientKey.from_header(file_key_to_transport(FileKey.generate()))


def test_export_refuses_wrong_key_kind() -> None:
    with pytest.raises(TypeError):
        patient_key_to_header(FileKey.generate())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        file_key_to_transport(PatientKey.generate())  # type: ignore[arg-type]


def test_no_public_constructor_from_bytes() -> None:
    with pytest.raises(TypeError):
        PatientKey(bytes(32))
    with pytest.raises(TypeError):
        FileKey(bytes(32))
    with pytest.raises(TypeError):
        PatientKeyring(bytes(32), PatientContext("t", "p"))


def _opaque_objects() -> list[object]:
    """Every kind of object in the package that holds a key (the doctor's private key,
    which copies to itself, is checked in test_escrow)."""
    patient_key = PatientKey.generate()
    file_key = FileKey.generate()
    keyring, _ = PatientKeyring.create(patient_key, PatientContext("t", "p"))
    enc = StreamingEncryptor(file_key, b"a")
    return [
        patient_key,
        file_key,
        keyring,
        enc,
        StreamingDecryptor(file_key, b"a", enc.header),
        RandomAccessDecryptor(file_key, b"a", enc.header),
        SealingKey.generate(),
        PseudonymKey.generate(),
        generate_checkpoint_signer(),
        _primitives.hpke_generate(_primitives.HpkeKem.X25519),
        _primitives.Aead(bytes(32)),
    ]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_refused(protocol: int) -> None:
    for obj in _opaque_objects():
        with pytest.raises(TypeError):
            pickle.dumps(obj, protocol=protocol)


def test_copy_refused() -> None:
    for obj in _opaque_objects():
        with pytest.raises(TypeError):
            copy.copy(obj)
        with pytest.raises(TypeError):
            copy.deepcopy(obj)


def test_keys_print_as_stars(caplog: pytest.LogCaptureFixture) -> None:
    patient_key = PatientKey.generate()
    file_key = FileKey.generate()
    for obj in _opaque_objects():
        assert repr(obj) == "***"
        assert str(obj) == "***"
        assert f"{obj}" == "***"
        assert f"{obj!r}" == "***"
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("key=%s %r", patient_key, file_key)
    assert patient_key_to_header(patient_key) not in caplog.text
    assert caplog.messages == ["key=*** ***"]


def test_key_objects_have_no_public_byte_attributes() -> None:
    for obj in _opaque_objects()[:3]:
        public = [name for name in dir(obj) if not name.startswith("_")]
        for name in public:
            assert not isinstance(getattr(obj, name), bytes | bytearray), name


def test_equality_is_constant_time_and_keys_are_unhashable() -> None:
    key = PatientKey.generate()
    same = PatientKey.from_header(patient_key_to_header(key))
    assert key == same
    assert key != PatientKey.generate()
    assert key != FileKey.from_transport(file_key_to_transport(FileKey.generate()))
    with pytest.raises(TypeError):
        hash(key)


def test_internal_patient_key_constructor_for_escrow() -> None:
    from carevault_crypto.keys import _patient_key_from_raw

    key = PatientKey.generate()
    assert _patient_key_from_raw(key._raw) == key
    with pytest.raises(InvalidKeyFormat):
        _patient_key_from_raw(bytes(31))
