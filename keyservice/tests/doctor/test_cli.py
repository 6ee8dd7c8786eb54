"""carevault-doctor keygen, public-key and open, driven through main([...])."""

from __future__ import annotations

import base64
import getpass
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from carevault_crypto import PatientKey
from carevault_crypto.escrow import (
    DoctorPrivateKey,
    DoctorPublicKey,
    EscrowContext,
    EscrowSuite,
    inspect_escrow_package,
)
from carevault_crypto.export import patient_key_to_header
from carevault_keyservice.doctor.cli import main

CTX = EscrowContext("clinic-a", "patient-0001", 2)
SUITES = list(EscrowSuite)
Seal = Callable[[Path, EscrowContext], tuple[bytes, PatientKey]]
pytestmark = pytest.mark.usefixtures("no_network")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def pub(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


# --- keygen --------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES, ids=[s.value for s in SUITES])
def test_keygen_writes_protected_key_and_public_file(
    tmp_path: Path, passphrase_file: Path, passphrase: str, capsys: pytest.CaptureFixture[str], suite: EscrowSuite
) -> None:
    private = tmp_path / "doctor.key"
    argv = ["keygen", "--out", str(private), "--suite", suite.value]
    assert main([*argv, "--passphrase-file", str(passphrase_file)]) == 0
    public = DoctorPublicKey.from_text(pub(private).read_text(encoding="utf-8"))
    assert capsys.readouterr().out == public.key_id + "\n"
    assert public.suite is suite
    assert mode(private) == 0o600
    assert mode(pub(private)) == 0o644
    document = json.loads(private.read_text(encoding="utf-8"))
    assert document["suite"] == suite.value
    assert document["key_id"] == public.key_id
    assert document["kdf"]["log2_n"] == 17  # the production cost, not the tests' one
    key = DoctorPrivateKey.from_encrypted_text(private.read_text(), passphrase)
    assert key.public_key() == public


def test_keygen_default_suite_is_hybrid(tmp_path: Path, passphrase_file: Path) -> None:
    private = tmp_path / "doctor.key"
    assert main(["keygen", "--out", str(private), "--passphrase-file", str(passphrase_file)]) == 0
    assert json.loads(pub(private).read_text())["suite"] == "hybrid"


@pytest.mark.parametrize("existing", ["doctor.key", "doctor.key.pub"])
def test_keygen_refuses_to_overwrite(tmp_path: Path, passphrase_file: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious")
    argv = ["keygen", "--out", str(tmp_path / "doctor.key")]
    assert main([*argv, "--passphrase-file", str(passphrase_file)]) == 6
    assert (tmp_path / existing).read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_keygen_refuses_a_short_passphrase(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too short\n")
    argv = ["keygen", "--out", str(tmp_path / "k"), "--passphrase-file", str(short)]
    assert main(argv) == 2
    assert not (tmp_path / "k").exists()


def test_keygen_asks_twice_at_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first passphrase typed", "second passphrase typed"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    assert main(["keygen", "--out", str(tmp_path / "k"), "--suite", "classic"]) == 2
    assert not (tmp_path / "k").exists()

    answers = iter(["same passphrase typed", "same passphrase typed"])
    assert main(["keygen", "--out", str(tmp_path / "k"), "--suite", "classic"]) == 0
    DoctorPrivateKey.from_encrypted_text((tmp_path / "k").read_text(), "same passphrase typed")


# --- public-key ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["private", "public"])
def test_public_key_prints_the_public_file(doctors: dict[EscrowSuite, Path], capsys: pytest.CaptureFixture[str], which: str) -> None:
    private = doctors[EscrowSuite.HYBRID]
    key_file = private if which == "private" else pub(private)
    assert main(["public-key", "--key", str(key_file)]) == 0
    assert capsys.readouterr().out == pub(private).read_text()


def test_public_key_verify(
    doctors: dict[EscrowSuite, Path],
    passphrase_file: Path,
    wrong_passphrase_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    private = doctors[EscrowSuite.CLASSIC]
    argv = ["public-key", "--key", str(private), "--verify", "--passphrase-file"]
    assert main([*argv, str(passphrase_file)]) == 0
    assert capsys.readouterr().out == pub(private).read_text()
    assert main([*argv, str(wrong_passphrase_file)]) == 3
    assert capsys.readouterr().out == ""
    assert main(["public-key", "--key", str(pub(private)), "--verify"]) == 2


# --- open ----------------------------------------------------------------------------


def _open(private: Path, package: Path, passphrase_file: Path, *extra: str) -> int:
    argv = ["open", "--key", str(private), "--package", str(package)]
    return main([*argv, "--passphrase-file", str(passphrase_file), *extra])


def _record(ctx: EscrowContext, package: bytes) -> str:
    return json.dumps(
        {
            "tenant": ctx.tenant,
            "patient_id": ctx.patient_id,
            "key_version": ctx.key_version,
            "package": base64.b64encode(package).decode(),
        }
    )


@pytest.mark.parametrize("suite", SUITES, ids=[s.value for s in SUITES])
@pytest.mark.parametrize("form", ["binary", "base64", "base64url", "record"])
def test_open_prints_the_patient_key(
    doctors: dict[EscrowSuite, Path],
    seal: Seal,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    suite: EscrowSuite,
    form: str,
) -> None:
    package, key = seal(doctors[suite], CTX)
    path = tmp_path / "package"
    if form == "binary":
        path.write_bytes(package)
    elif form == "base64":
        path.write_text(base64.b64encode(package).decode() + "\n")
    elif form == "base64url":
        path.write_text(base64.urlsafe_b64encode(package).decode().rstrip("="))
    else:
        path.write_text(_record(CTX, package))
    assert _open(doctors[suite], path, passphrase_file, "--print") == 0
    captured = capsys.readouterr()
    assert captured.out == patient_key_to_header(key) + "\n"
    assert patient_key_to_header(key) not in captured.err
    assert "patient-0001" in captured.err


def test_open_refuses_to_write_the_key_to_a_pipe(
    doctors: dict[EscrowSuite, Path], seal: Seal, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = doctors[EscrowSuite.CLASSIC]
    (tmp_path / "package").write_bytes(seal(private, CTX)[0])
    assert _open(private, tmp_path / "package", passphrase_file) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--out" in captured.err


def test_open_writes_the_key_to_a_new_0600_file(
    doctors: dict[EscrowSuite, Path], seal: Seal, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = doctors[EscrowSuite.HYBRID]
    package, key = seal(private, CTX)
    (tmp_path / "package").write_bytes(package)
    out = tmp_path / "patient.key"
    assert _open(private, tmp_path / "package", passphrase_file, "--out", str(out)) == 0
    assert out.read_text() == patient_key_to_header(key) + "\n"
    assert mode(out) == 0o600
    captured = capsys.readouterr()
    assert patient_key_to_header(key) not in captured.out + captured.err
    # A second run does not overwrite the file.
    assert _open(private, tmp_path / "package", passphrase_file, "--out", str(out)) == 6


def test_open_with_a_wrong_passphrase(
    doctors: dict[EscrowSuite, Path], seal: Seal, wrong_passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = doctors[EscrowSuite.CLASSIC]
    (tmp_path / "package").write_bytes(seal(private, CTX)[0])
    assert _open(private, tmp_path / "package", wrong_passphrase_file, "--print") == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "wrong passphrase" in captured.err


def test_open_package_for_another_doctor_key(
    doctors: dict[EscrowSuite, Path],
    second_hybrid: Path,
    seal: Seal,
    public_of: Callable[[Path], DoctorPublicKey],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "package").write_bytes(seal(second_hybrid, CTX)[0])

    def no_prompt(prompt: str) -> str:
        raise AssertionError("asked for a passphrase the package cannot use")

    monkeypatch.setattr(getpass, "getpass", no_prompt)
    private = doctors[EscrowSuite.HYBRID]
    argv = ["open", "--key", str(private), "--package", str(tmp_path / "package")]
    assert main([*argv, "--print"]) == 4
    err = capsys.readouterr().err
    assert public_of(second_hybrid).key_id in err
    assert public_of(private).key_id in err


@pytest.mark.parametrize("suite", SUITES, ids=[s.value for s in SUITES])
def test_open_tampered_package(
    doctors: dict[EscrowSuite, Path],
    seal: Seal,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    suite: EscrowSuite,
) -> None:
    package, key = seal(doctors[suite], CTX)
    header = len(package) - {EscrowSuite.HYBRID: 1168, EscrowSuite.CLASSIC: 80}[suite]
    for position in (header - 1, header + 5, len(package) - 1):  # context, enc, tag
        tampered = bytearray(package)
        tampered[position] ^= 0x01
        (tmp_path / "package").write_bytes(bytes(tampered))
        assert _open(doctors[suite], tmp_path / "package", passphrase_file, "--print") == 5
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "cannot be opened" in captured.err
        assert patient_key_to_header(key) not in captured.err


def test_open_refuses_another_patient_than_expected(
    doctors: dict[EscrowSuite, Path], seal: Seal, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = doctors[EscrowSuite.CLASSIC]
    (tmp_path / "package").write_bytes(seal(private, CTX)[0])
    for extra in (["--patient-id", "patient-0002"], ["--tenant", "b"], ["--key-version", "3"]):
        assert _open(private, tmp_path / "package", passphrase_file, "--print", *extra) == 5
        assert capsys.readouterr().out == ""
    expected = ["--tenant", CTX.tenant, "--patient-id", CTX.patient_id, "--key-version", "2"]
    assert _open(private, tmp_path / "package", passphrase_file, "--print", *expected) == 0


def test_open_refuses_a_record_that_lies_about_its_package(
    doctors: dict[EscrowSuite, Path], seal: Seal, passphrase_file: Path, tmp_path: Path
) -> None:
    private = doctors[EscrowSuite.CLASSIC]
    package, _ = seal(private, CTX)
    lying = EscrowContext(CTX.tenant, "patient-9999", CTX.key_version)
    (tmp_path / "record.json").write_text(_record(lying, package))
    assert _open(private, tmp_path / "record.json", passphrase_file, "--print") == 5
    assert inspect_escrow_package(package).context == CTX
    # A record that agrees with its package but not with the doctor's expectation.
    (tmp_path / "record.json").write_text(_record(CTX, package))
    assert _open(private, tmp_path / "record.json", passphrase_file, "--print", "--patient-id", "x") == 5


@pytest.mark.parametrize("content", [b"", b"hello, world", b'{"tenant": 1}', b"\x01\x02", b"\xff\xfe"])
def test_open_refuses_what_is_not_a_package(
    doctors: dict[EscrowSuite, Path], passphrase_file: Path, tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "package").write_bytes(content)
    assert _open(doctors[EscrowSuite.CLASSIC], tmp_path / "package", passphrase_file, "--print") in (5, 6)


def test_missing_files_and_bad_usage(doctors: dict[EscrowSuite, Path], passphrase_file: Path, tmp_path: Path) -> None:
    private = doctors[EscrowSuite.CLASSIC]
    assert _open(private, tmp_path / "absent", passphrase_file, "--print") == 6
    argv = ["open", "--key", str(tmp_path / "absent"), "--package", str(pub(private))]
    assert main([*argv, "--print"]) == 6
    assert main(["open", "--key", str(private)]) == 2  # --package is required
    assert main([]) == 2
    assert main(["--help"]) == 0
