"""carevault-doctor re-escrow: bulk rewrap from an old key pair to a new public key."""

from __future__ import annotations

import base64
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
    open_escrow,
)
from carevault_crypto.export import patient_key_to_header
from carevault_keyservice.doctor.cli import main

Seal = Callable[[Path, EscrowContext], tuple[bytes, PatientKey]]
pytestmark = pytest.mark.usefixtures("no_network")


def pub(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def _records(seal: Seal, old: Path, count: int, start: int = 0) -> tuple[list[str], dict[str, str]]:
    """JSON lines sealed to ``old``, and the patient key of each patient id."""
    lines, keys = [], {}
    key_id = DoctorPublicKey.from_text(pub(old).read_text()).key_id
    for i in range(start, start + count):
        ctx = EscrowContext(f"tenant-{i % 2}", f"patient-{i:04d}", i % 3)
        package, key = seal(old, ctx)
        keys[ctx.patient_id] = patient_key_to_header(key)
        record = {
            "tenant": ctx.tenant,
            "patient_id": ctx.patient_id,
            "key_version": ctx.key_version,
            "doctor_key_id": key_id,
            "package": base64.b64encode(package).decode(),
        }
        lines.append(json.dumps(record))
    return lines, keys


def _run(old: Path, new: Path, source: Path, out: Path, passphrase_file: Path, *extra: str) -> int:
    return main(
        [
            "re-escrow",
            *("--old-key", str(old), "--new-public", str(pub(new))),
            *("--in", str(source), "--out", str(out)),
            *("--passphrase-file", str(passphrase_file)),
            *extra,
        ]
    )


def _check_output(out: Path, new: Path, passphrase: str, keys: dict[str, str]) -> None:
    private = DoctorPrivateKey.from_encrypted_text(new.read_text(), passphrase)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(keys)
    for line in lines:
        record = json.loads(line)
        assert record["doctor_key_id"] == private.key_id
        package = base64.b64decode(record["package"], validate=True)
        ctx = EscrowContext(record["tenant"], record["patient_id"], record["key_version"])
        assert inspect_escrow_package(package).context == ctx
        assert patient_key_to_header(open_escrow(private, package, ctx)) == keys[ctx.patient_id]


@pytest.mark.parametrize(
    ("old_suite", "new_suite"),
    [(EscrowSuite.HYBRID, EscrowSuite.CLASSIC), (EscrowSuite.CLASSIC, EscrowSuite.HYBRID)],
    ids=["hybrid-to-classic", "classic-to-hybrid"],
)
def test_reescrow_round_trip(
    doctors: dict[EscrowSuite, Path],
    seal: Seal,
    passphrase: str,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old_suite: EscrowSuite,
    new_suite: EscrowSuite,
) -> None:
    old, new = doctors[old_suite], doctors[new_suite]
    lines, keys = _records(seal, old, 5)
    source = tmp_path / "export.jsonl"
    source.write_text("\n".join(lines) + "\n\n")  # a blank line is tolerated
    out = tmp_path / "upload.jsonl"
    assert _run(old, new, source, out, passphrase_file) == 0
    _check_output(out, new, passphrase, keys)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"rewrapped": 5, "failed": 0}
    for key in keys.values():
        assert key not in captured.out + captured.err


def test_reescrow_reads_a_directory_of_exports(
    doctors: dict[EscrowSuite, Path], second_hybrid: Path, seal: Seal, passphrase: str, passphrase_file: Path, tmp_path: Path
) -> None:
    old = doctors[EscrowSuite.HYBRID]
    source = tmp_path / "exports"
    source.mkdir()
    first, keys = _records(seal, old, 3)
    second, more = _records(seal, old, 2, start=3)
    (source / "part-1.jsonl").write_text("\n".join(first) + "\n")
    (source / "part-2.jsonl").write_text("\n".join(second) + "\n")
    (source / "notes.txt").write_text("not an export")
    out = tmp_path / "upload.jsonl"
    assert _run(old, second_hybrid, source, out, passphrase_file) == 0
    _check_output(out, second_hybrid, passphrase, keys | more)


def _with_bad_line(seal: Seal, old: Path, tmp_path: Path, bad: str) -> tuple[Path, dict[str, str]]:
    lines, keys = _records(seal, old, 4)
    lines.insert(2, bad)
    source = tmp_path / "export.jsonl"
    source.write_text("\n".join(lines) + "\n")
    return source, keys


def _tampered_line(seal: Seal, old: Path) -> str:
    record = json.loads(_records(seal, old, 1, start=99)[0][0])
    package = bytearray(base64.b64decode(record["package"]))
    package[-1] ^= 1
    record["package"] = base64.b64encode(package).decode()
    return json.dumps(record)


def test_reescrow_stops_at_the_first_bad_package_and_writes_nothing(
    doctors: dict[EscrowSuite, Path], seal: Seal, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = doctors[EscrowSuite.CLASSIC], doctors[EscrowSuite.HYBRID]
    source, _ = _with_bad_line(seal, old, tmp_path, _tampered_line(seal, old))
    out = tmp_path / "upload.jsonl"
    assert _run(old, new, source, out, passphrase_file) == 5
    assert not out.exists()
    assert f"{source}:3" in capsys.readouterr().err


def test_reescrow_keep_going_rewraps_the_rest(
    doctors: dict[EscrowSuite, Path],
    seal: Seal,
    passphrase: str,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = doctors[EscrowSuite.CLASSIC], doctors[EscrowSuite.HYBRID]
    source, keys = _with_bad_line(seal, old, tmp_path, _tampered_line(seal, old))
    out = tmp_path / "upload.jsonl"
    assert _run(old, new, source, out, passphrase_file, "--keep-going") == 5
    _check_output(out, new, passphrase, keys)
    assert json.loads(capsys.readouterr().out) == {"rewrapped": 4, "failed": 1}


@pytest.mark.parametrize("problem", ["other-doctor", "lying-record", "malformed"])
def test_reescrow_reports_each_kind_of_bad_line(
    doctors: dict[EscrowSuite, Path],
    second_hybrid: Path,
    seal: Seal,
    passphrase: str,
    passphrase_file: Path,
    tmp_path: Path,
    problem: str,
) -> None:
    old, new = doctors[EscrowSuite.HYBRID], doctors[EscrowSuite.CLASSIC]
    if problem == "other-doctor":
        bad, code = _records(seal, second_hybrid, 1, start=50)[0][0], 4
    elif problem == "lying-record":
        record = json.loads(_records(seal, old, 1, start=50)[0][0])
        record["patient_id"] = "patient-0000"
        bad, code = json.dumps(record), 5
    else:
        bad, code = '{"tenant": "t", "patient_id": "p", "key_version": "one"}', 6
    source, keys = _with_bad_line(seal, old, tmp_path, bad)
    out = tmp_path / "upload.jsonl"
    assert _run(old, new, source, out, passphrase_file, "--keep-going") == code
    _check_output(out, new, passphrase, keys)


def test_reescrow_refusals(
    doctors: dict[EscrowSuite, Path], seal: Seal, passphrase_file: Path, wrong_passphrase_file: Path, tmp_path: Path
) -> None:
    old, new = doctors[EscrowSuite.HYBRID], doctors[EscrowSuite.CLASSIC]
    lines, _ = _records(seal, old, 1)
    source = tmp_path / "export.jsonl"
    source.write_text(lines[0] + "\n")
    out = tmp_path / "upload.jsonl"
    assert _run(old, old, source, out, passphrase_file) == 2  # same key
    assert _run(old, new, source, out, wrong_passphrase_file) == 3
    assert not out.exists()
    assert _run(old, new, tmp_path / "absent.jsonl", out, passphrase_file) == 6
    (tmp_path / "empty-dir").mkdir()
    assert _run(old, new, tmp_path / "empty-dir", out, passphrase_file) == 6
    out.write_text("an earlier upload")
    assert _run(old, new, source, out, passphrase_file) == 6
    assert out.read_text() == "an earlier upload"
