"""Escrow of patient keys to the hosting doctor: round trips, binding, tampering,
doctor key files, re-escrow and the checked-in vectors."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import pickle
import struct
import unicodedata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import carevault_crypto
from carevault_crypto import FileKey, PatientKey, errors
from carevault_crypto.escrow import (
    DecryptionError,
    DoctorKeyFileError,
    DoctorPrivateKey,
    DoctorPublicKey,
    EscrowContext,
    EscrowSuite,
    WrongDoctorKeyError,
    WrongPassphraseError,
    generate_doctor_key,
    inspect_escrow_package,
    open_escrow,
    public_key_from_key_file,
    rewrap_escrow,
    seal_escrow,
)
from carevault_crypto.export import patient_key_to_header
from carevault_crypto.keys import _patient_key_from_raw

TESTS = Path(__file__).parent
VECTOR_DIR = TESTS / "vectors" / "escrow"
SUITES = list(EscrowSuite)
CTX = EscrowContext("clinic-a", "patient-0001", 3)
FAST = 14  # scrypt log2(N) for tests; production default is 17


@pytest.fixture(scope="module", params=SUITES, ids=[s.value for s in SUITES])
def doctor(request: pytest.FixtureRequest) -> DoctorPrivateKey:
    return generate_doctor_key(request.param)


@pytest.fixture(scope="module")
def keys() -> dict[EscrowSuite, DoctorPrivateKey]:
    return {suite: generate_doctor_key(suite) for suite in SUITES}


def new_patient_key() -> PatientKey:
    return PatientKey.generate()


# --- round trips ---------------------------------------------------------------------


def test_default_suite_is_hybrid() -> None:
    assert generate_doctor_key().suite is EscrowSuite.HYBRID


def test_round_trip_with_and_without_expected_context(doctor: DoctorPrivateKey) -> None:
    key = new_patient_key()
    package = seal_escrow(doctor.public_key(), key, CTX)
    assert open_escrow(doctor, package, CTX) == key
    assert open_escrow(doctor, package) == key


def test_header_names_version_suite_key_id_and_context(
    doctor: DoctorPrivateKey,
) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    info = inspect_escrow_package(package)
    assert (info.format_version, info.suite, info.doctor_key_id, info.context) == (
        1,
        doctor.suite,
        doctor.key_id,
        CTX,
    )
    assert package[0] == 1


def test_sealing_twice_gives_different_packages(doctor: DoctorPrivateKey) -> None:
    key = new_patient_key()
    assert seal_escrow(doctor.public_key(), key, CTX) != seal_escrow(doctor.public_key(), key, CTX)


def test_the_escrowed_key_is_the_platform_patient_key(doctor: DoctorPrivateKey) -> None:
    raw = bytes(range(32))
    key = _patient_key_from_raw(raw)
    opened = open_escrow(doctor, seal_escrow(doctor.public_key(), key, CTX))
    assert type(opened) is PatientKey
    assert opened._raw == raw
    header = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert patient_key_to_header(opened) == header
    assert PatientKey.from_header(header) == opened


def test_seal_takes_only_a_patient_key(doctor: DoctorPrivateKey) -> None:
    class Revealing:  # the duck type the first escrow API accepted
        def _reveal(self) -> bytes:
            return b"\x07" * 32

    for not_a_patient_key in (Revealing(), FileKey.generate(), b"\x07" * 32):
        with pytest.raises(TypeError, match="PatientKey"):
            seal_escrow(doctor.public_key(), not_a_patient_key, CTX)  # type: ignore[arg-type]


# --- binding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        EscrowContext("clinic-b", CTX.patient_id, CTX.key_version),
        EscrowContext(CTX.tenant, "patient-0002", CTX.key_version),
        EscrowContext(CTX.tenant, CTX.patient_id, CTX.key_version + 1),
    ],
    ids=["tenant", "patient", "key_version"],
)
def test_package_refused_under_another_context(doctor: DoctorPrivateKey, other: EscrowContext) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    with pytest.raises(DecryptionError) as caught:
        open_escrow(doctor, package, other)
    assert type(caught.value) is DecryptionError


def _reheader(package: bytes, ctx: EscrowContext, key_id: bytes | None = None) -> bytes:
    """Rewrite a package's header in place, keeping its HPKE ciphertext."""
    info = inspect_escrow_package(package)
    old = _encode_header(package[1], bytes.fromhex(info.doctor_key_id), info.context)
    new = _encode_header(package[1], key_id or bytes.fromhex(info.doctor_key_id), ctx)
    assert package.startswith(old)
    return new + package[len(old) :]


def _encode_header(suite_id: int, key_id: bytes, ctx: EscrowContext) -> bytes:
    # Written out here on purpose rather than imported: an independent reading of the
    # layout documented in docs/security-escrow.md.
    tenant, patient = ctx.tenant.encode(), ctx.patient_id.encode()
    return (
        bytes([1, suite_id])
        + key_id
        + struct.pack(">H", len(tenant))
        + tenant
        + struct.pack(">H", len(patient))
        + patient
        + struct.pack(">I", ctx.key_version)
    )


@pytest.mark.parametrize(
    "forged",
    [
        EscrowContext("clinic-b", CTX.patient_id, CTX.key_version),
        EscrowContext(CTX.tenant, "patient-0002", CTX.key_version),
        EscrowContext(CTX.tenant, CTX.patient_id, 4),
    ],
    ids=["tenant", "patient", "key_version"],
)
def test_rewritten_header_context_is_refused(doctor: DoctorPrivateKey, forged: EscrowContext) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    forgery = _reheader(package, forged)
    assert inspect_escrow_package(forgery).context == forged
    with pytest.raises(DecryptionError):
        open_escrow(doctor, forgery)
    with pytest.raises(DecryptionError):
        open_escrow(doctor, forgery, forged)


def test_package_bound_to_doctor_key(keys: dict[EscrowSuite, DoctorPrivateKey]) -> None:
    # A package sealed to key A and relabelled with key B's id does not open with B.
    a = keys[EscrowSuite.HYBRID]
    b = generate_doctor_key(EscrowSuite.HYBRID)
    package = seal_escrow(a.public_key(), new_patient_key(), CTX)
    relabelled = _reheader(package, CTX, bytes.fromhex(b.key_id))
    with pytest.raises(DecryptionError) as caught:
        open_escrow(b, relabelled)
    assert not isinstance(caught.value, WrongDoctorKeyError)


def test_package_for_another_doctor_key_gets_its_own_error(
    keys: dict[EscrowSuite, DoctorPrivateKey],
) -> None:
    for sealed_to, opener in [
        (keys[EscrowSuite.HYBRID], generate_doctor_key(EscrowSuite.HYBRID)),
        (keys[EscrowSuite.HYBRID], keys[EscrowSuite.CLASSIC]),
        (keys[EscrowSuite.CLASSIC], keys[EscrowSuite.HYBRID]),
    ]:
        package = seal_escrow(sealed_to.public_key(), new_patient_key(), CTX)
        with pytest.raises(WrongDoctorKeyError) as caught:
            open_escrow(opener, package)
        assert caught.value.package_key_id == sealed_to.key_id
        assert caught.value.private_key_id == opener.key_id
        assert sealed_to.key_id in str(caught.value)


# --- tampering -----------------------------------------------------------------------


def test_every_single_byte_change_is_detected(doctor: DoctorPrivateKey) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    for position in range(len(package)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(package)
            tampered[position] ^= mask
            with pytest.raises(DecryptionError):
                open_escrow(doctor, bytes(tampered))


def test_truncated_or_extended_package_is_refused(doctor: DoctorPrivateKey) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    for length in range(len(package)):
        with pytest.raises(DecryptionError):
            open_escrow(doctor, package[:length])
    with pytest.raises(DecryptionError):
        open_escrow(doctor, package + b"\x00")


def test_one_message_for_every_failure(doctor: DoctorPrivateKey) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    tampered = package[:-1] + bytes([package[-1] ^ 1])
    other_ctx = EscrowContext("clinic-b", CTX.patient_id, CTX.key_version)
    messages = set()
    for attempt, ctx in [(tampered, None), (package, other_ctx), (b"\x02junk", None)]:
        with pytest.raises(DecryptionError) as caught:
            open_escrow(doctor, attempt, ctx)
        # No chained library exception tells more than the message does.
        error = caught.value
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
        messages.add(str(caught.value))
    assert messages == {"decryption failed"}


def test_one_decryption_error_class_for_the_whole_package() -> None:
    assert DecryptionError is errors.DecryptionError is carevault_crypto.DecryptionError
    assert issubclass(WrongDoctorKeyError, DecryptionError)
    assert not issubclass(WrongPassphraseError, DecryptionError)
    assert issubclass(DoctorKeyFileError, ValueError)


def test_unknown_suite_id_is_refused(doctor: DoctorPrivateKey) -> None:
    package = bytearray(seal_escrow(doctor.public_key(), new_patient_key(), CTX))
    package[1] = 0x7F
    with pytest.raises(DecryptionError):
        inspect_escrow_package(bytes(package))


# --- re-escrow -----------------------------------------------------------------------


@pytest.mark.parametrize("new_suite", SUITES, ids=[s.value for s in SUITES])
def test_rewrap_to_a_new_doctor_key(doctor: DoctorPrivateKey, new_suite: EscrowSuite) -> None:
    key = new_patient_key()
    new = generate_doctor_key(new_suite)
    package = seal_escrow(doctor.public_key(), key, CTX)
    rewrapped = rewrap_escrow(doctor, package, new.public_key())
    info = inspect_escrow_package(rewrapped)
    assert (info.suite, info.doctor_key_id, info.context) == (
        new_suite,
        new.key_id,
        CTX,
    )
    assert open_escrow(new, rewrapped, CTX) == key
    with pytest.raises(WrongDoctorKeyError):
        open_escrow(doctor, rewrapped)


def test_rewrap_refuses_a_tampered_package(doctor: DoctorPrivateKey) -> None:
    package = seal_escrow(doctor.public_key(), new_patient_key(), CTX)
    forged = _reheader(package, EscrowContext("clinic-b", "patient-0001", 3))
    with pytest.raises(DecryptionError):
        rewrap_escrow(doctor, forged, generate_doctor_key().public_key())


# --- opaque keys and the context -----------------------------------------------------


def test_secret_objects_are_opaque(doctor: DoctorPrivateKey) -> None:
    key = open_escrow(doctor, seal_escrow(doctor.public_key(), new_patient_key(), CTX))
    for secret in (key, doctor):
        assert repr(secret) == str(secret) == f"{secret}" == "***"
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(secret)
    assert patient_key_to_header(key) not in repr(key)
    # A doctor key copies to itself; a PatientKey refuses to be copied at all.
    assert copy.copy(doctor) is doctor
    assert copy.deepcopy(doctor) is doctor
    for copier in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="copied"):
            copier(key)


@pytest.mark.parametrize(
    ("tenant", "patient_id", "key_version", "error"),
    [
        ("", "p", 1, ValueError),
        ("t", "", 1, ValueError),
        ("t" * 256, "p", 1, ValueError),
        ("t", "é" * 128, 1, ValueError),  # 256 UTF-8 bytes
        ("t", "\ud800", 1, ValueError),
        ("t", "p", -1, ValueError),
        ("t", "p", 2**32, ValueError),
        ("t", "p", True, TypeError),
        (1, "p", 1, TypeError),
    ],
)
def test_context_validation(tenant: object, patient_id: object, key_version: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        EscrowContext(tenant, patient_id, key_version)  # type: ignore[arg-type]


def test_context_limits_round_trip(doctor: DoctorPrivateKey) -> None:
    ctx = EscrowContext("t" * 255, "é" * 127, 2**32 - 1)
    package = seal_escrow(doctor.public_key(), new_patient_key(), ctx)
    assert inspect_escrow_package(package).context == ctx
    open_escrow(doctor, package, ctx)


# --- doctor key files ----------------------------------------------------------------


def test_key_id_is_deterministic_and_short(doctor: DoctorPrivateKey) -> None:
    again = DoctorPrivateKey._from_private_bytes(doctor.suite, doctor._private_bytes())
    assert again.key_id == doctor.key_id
    assert len(doctor.key_id) == 32
    assert int(doctor.key_id, 16) >= 0


def test_public_key_file_round_trip(doctor: DoctorPrivateKey) -> None:
    text = doctor.public_key().to_text()
    document = json.loads(text)
    assert document["format"] == "carevault-doctor-public-key"
    assert (document["version"], document["suite"], document["key_id"]) == (
        1,
        doctor.suite.value,
        doctor.key_id,
    )
    loaded = DoctorPublicKey.from_text(text)
    assert loaded == doctor.public_key()
    assert loaded.key_id == doctor.key_id
    assert doctor.key_id in repr(loaded)


@pytest.mark.parametrize(
    "change",
    [
        {"key_id": "00" * 16},
        {"version": 2},
        {"format": "something-else"},
        {"suite": "quantum"},
        {"public_key": "AAAA"},
        {"public_key": "not base64!"},
    ],
)
def test_bad_public_key_files_are_refused(keys: dict[EscrowSuite, DoctorPrivateKey], change: dict[str, Any]) -> None:
    document = json.loads(keys[EscrowSuite.HYBRID].public_key().to_text())
    document.update(change)
    with pytest.raises(DoctorKeyFileError):
        DoctorPublicKey.from_text(json.dumps(document))


def test_public_key_file_swapped_suite_is_refused(
    keys: dict[EscrowSuite, DoctorPrivateKey],
) -> None:
    document = json.loads(keys[EscrowSuite.CLASSIC].public_key().to_text())
    document["suite"] = "hybrid"
    with pytest.raises(DoctorKeyFileError):
        DoctorPublicKey.from_text(json.dumps(document))
    with pytest.raises(DoctorKeyFileError):
        DoctorPublicKey.from_text("not json")


def test_private_key_file_round_trip(doctor: DoctorPrivateKey) -> None:
    text = doctor.to_encrypted_text("correct horse battery staple", _log2_n=FAST)
    assert doctor._private_bytes().hex() not in text
    document = json.loads(text)
    assert document["format"] == "carevault-doctor-private-key"
    assert document["kdf"]["name"] == "scrypt"
    assert document["cipher"] == "AES-256-GCM"
    loaded = DoctorPrivateKey.from_encrypted_text(text, "correct horse battery staple")
    assert loaded._private_bytes() == doctor._private_bytes()
    assert public_key_from_key_file(text) == doctor.public_key()


def test_default_scrypt_cost(keys: dict[EscrowSuite, DoctorPrivateKey]) -> None:
    text = keys[EscrowSuite.CLASSIC].to_encrypted_text("pass phrase")
    assert json.loads(text)["kdf"] | {"salt": None} == {
        "name": "scrypt",
        "log2_n": 17,
        "r": 8,
        "p": 1,
        "salt": None,
    }


def test_wrong_passphrase(doctor: DoctorPrivateKey) -> None:
    text = doctor.to_encrypted_text("right passphrase", _log2_n=FAST)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        DoctorPrivateKey.from_encrypted_text(text, "wrong passphrase")
    with pytest.raises(ValueError, match="non-empty"):
        DoctorPrivateKey.from_encrypted_text(text, "")


def test_passphrase_is_unicode_normalised(
    keys: dict[EscrowSuite, DoctorPrivateKey],
) -> None:
    composed = "mot de passe élevé"
    text = keys[EscrowSuite.CLASSIC].to_encrypted_text(composed, _log2_n=FAST)
    DoctorPrivateKey.from_encrypted_text(text, unicodedata.normalize("NFD", composed))


@pytest.fixture(scope="module")
def classic_key_file(keys: dict[EscrowSuite, DoctorPrivateKey]) -> str:
    return keys[EscrowSuite.CLASSIC].to_encrypted_text("passphrase", _log2_n=FAST)


def _edit(text: str, path: tuple[str, ...], value: object) -> str:
    document = json.loads(text)
    target = document
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return json.dumps(document)


def test_altered_private_key_file_is_refused(keys: dict[EscrowSuite, DoctorPrivateKey], classic_key_file: str) -> None:
    other = generate_doctor_key(EscrowSuite.CLASSIC).public_key()
    other_document = json.loads(other.to_text())
    swapped = _edit(classic_key_file, ("public_key",), other_document["public_key"])
    swapped = _edit(swapped, ("key_id",), other.key_id)
    with pytest.raises(WrongPassphraseError):  # the public half is authenticated
        DoctorPrivateKey.from_encrypted_text(swapped, "passphrase")
    salt = base64.b64encode(b"\x00" * 16).decode()
    with pytest.raises(WrongPassphraseError):
        DoctorPrivateKey.from_encrypted_text(_edit(classic_key_file, ("kdf", "salt"), salt), "passphrase")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 2),
        (("format",), "carevault-doctor-public-key"),
        (("key_id",), "00" * 16),
        (("kdf", "name"), "pbkdf2"),
        (("kdf", "log2_n"), 30),
        (("kdf", "log2_n"), 10),
        (("kdf", "r"), True),
        (("kdf", "salt"), "AAAA"),
        (("cipher",), "ChaCha20"),
        (("nonce",), "AAAA"),
        (("ciphertext",), 7),
    ],
)
def test_malformed_private_key_file_is_refused(classic_key_file: str, path: tuple[str, ...], value: object) -> None:
    with pytest.raises(DoctorKeyFileError):
        DoctorPrivateKey.from_encrypted_text(_edit(classic_key_file, path, value), "passphrase")


# --- checked-in vectors ------------------------------------------------------------


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_escrow_vectors", TESTS / "make_escrow_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vector(suite: EscrowSuite) -> dict[str, Any]:
    text = (VECTOR_DIR / f"{suite.value}.json").read_text(encoding="utf-8")
    vector: dict[str, Any] = json.loads(text)
    return vector


@pytest.mark.parametrize("suite", SUITES, ids=[s.value for s in SUITES])
def test_vectors_still_open(suite: EscrowSuite) -> None:
    vector = _vector(suite)
    key = DoctorPrivateKey._from_private_bytes(suite, bytes.fromhex(vector["doctor_private_key_hex"]))
    assert key.key_id == vector["doctor_key_id"]
    # The public key file format is byte-for-byte stable.
    assert key.public_key().to_text() == vector["doctor_public_key_file"]
    assert DoctorPublicKey.from_text(vector["doctor_public_key_file"]) == key.public_key()
    for case in vector["cases"]:
        ctx = EscrowContext(case["tenant"], case["patient_id"], case["key_version"])
        package = base64.b64decode(case["package"], validate=True)
        assert package.hex().startswith(case["header_hex"])
        info = inspect_escrow_package(package)
        assert (info.format_version, info.suite, info.doctor_key_id, info.context) == (
            1,
            suite,
            key.key_id,
            ctx,
        )
        assert patient_key_to_header(open_escrow(key, package, ctx)) == case["patient_key"]
        # Today's code lays the header out as it did when the vector was made.
        fresh = seal_escrow(key.public_key(), PatientKey.from_header(case["patient_key"]), ctx)
        assert fresh.hex().startswith(case["header_hex"])
        assert len(fresh) == len(package)
    opened = DoctorPrivateKey.from_encrypted_text(vector["encrypted_private_key_file"], vector["passphrase"])
    assert opened._private_bytes() == key._private_bytes()


def test_vectors_are_up_to_date() -> None:
    generator = _load_generator()
    assert generator.VECTOR_DIR == VECTOR_DIR
    assert {p.name for p in VECTOR_DIR.glob("*.json")} == {f"{suite.value}.json" for suite in SUITES}
    assert generator.main(["--check"]) == 0


def test_vector_check_refuses_a_stray_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = _load_generator()
    for path in VECTOR_DIR.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(generator, "VECTOR_DIR", tmp_path)
    assert generator.main(["--check"]) == 0
    (tmp_path / "escrow_classic.json").write_text("{}", encoding="utf-8")
    assert generator.main(["--check"]) == 1
