"""The tool as the doctor runs it: a separate process, `python -m ...doctor`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import carevault_keyservice.doctor
from carevault_crypto import PatientKey
from carevault_crypto.escrow import (
    DoctorPublicKey,
    EscrowContext,
    EscrowSuite,
    seal_escrow,
)
from carevault_crypto.export import patient_key_to_header

Seal = Callable[[Path, EscrowContext], tuple[bytes, PatientKey]]

SRC = Path(carevault_keyservice.doctor.__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "carevault_keyservice.doctor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_keygen_then_open_in_a_subprocess(tmp_path: Path, passphrase_file: Path) -> None:
    key_file = tmp_path / "doctor.key"
    made = run("keygen", "--out", str(key_file), "--passphrase-file", str(passphrase_file))
    assert made.returncode == 0, made.stderr
    public = DoctorPublicKey.from_text((tmp_path / "doctor.key.pub").read_text())
    assert made.stdout.strip() == public.key_id
    assert public.suite is EscrowSuite.HYBRID

    patient_key = PatientKey.generate()
    ctx = EscrowContext("clinic-a", "patient-0001", 1)
    (tmp_path / "package").write_bytes(seal_escrow(public, patient_key, ctx))
    base = ["open", "--key", str(key_file), "--package", str(tmp_path / "package")]
    base += ["--passphrase-file", str(passphrase_file)]

    refused = run(*base)  # stdout is a pipe: the key is not written there
    assert refused.returncode == 2
    assert refused.stdout == ""

    printed = run(*base, "--print")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == patient_key_to_header(patient_key) + "\n"
    assert patient_key_to_header(patient_key) not in printed.stderr

    out = tmp_path / "patient.key"
    written = run(*base, "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert out.read_text() == patient_key_to_header(patient_key) + "\n"
    assert patient_key_to_header(patient_key) not in written.stdout + written.stderr


def test_errors_in_a_subprocess(
    doctors: dict[EscrowSuite, Path],
    second_hybrid: Path,
    seal: Seal,
    passphrase_file: Path,
    wrong_passphrase_file: Path,
    tmp_path: Path,
) -> None:
    private = doctors[EscrowSuite.HYBRID]
    package, key = seal(private, EscrowContext("clinic-a", "patient-0001", 1))
    (tmp_path / "package").write_bytes(package)
    (tmp_path / "tampered").write_bytes(package[:-1] + bytes([package[-1] ^ 1]))
    (tmp_path / "other").write_bytes(seal(second_hybrid, EscrowContext("c", "p", 1))[0])
    for name, passphrase, code in [
        ("package", wrong_passphrase_file, 3),
        ("other", passphrase_file, 4),
        ("tampered", passphrase_file, 5),
    ]:
        result = run(
            "open",
            "--key",
            str(private),
            "--package",
            str(tmp_path / name),
            "--passphrase-file",
            str(
                passphrase,
            ),
            "--print",
        )
        assert result.returncode == code, result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith("carevault-doctor: error: ")
        assert "Traceback" not in result.stderr
        assert patient_key_to_header(key) not in result.stderr
