"""Bulk re-escrow: rewrap every package from the old doctor key to a new public key.

Runs on the doctor's offline machine after a key rotation. Input is the JSON-lines
export of keyservice (a file, or a directory of ``*.jsonl`` files); output is a new
JSON-lines file of packages sealed to the new key, to be uploaded to keyservice.
Streams line by line, so the export can be of any size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from carevault_crypto.escrow import (
    DecryptionError,
    DoctorPrivateKey,
    DoctorPublicKey,
    inspect_escrow_package,
    rewrap_escrow,
)
from carevault_keyservice.doctor._common import (
    DoctorToolError,
    ExitCode,
    error_for,
    open_new_file,
    say,
)
from carevault_keyservice.doctor.records import RecordError, parse_record, render_record


@dataclass
class Outcome:
    done: int = 0
    failed: int = 0
    first_failure: ExitCode = ExitCode.OK


def input_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.glob("*.jsonl") if p.is_file())
        if not files:
            raise DoctorToolError(f"no *.jsonl file in {source}", ExitCode.FILE_PROBLEM)
        return files
    if not source.is_file():
        raise DoctorToolError(f"no such file or directory: {source}", ExitCode.FILE_PROBLEM)
    return [source]


def _lines(files: list[Path]) -> Iterator[tuple[str, str]]:
    """(location, line) for every non-blank line, location as FILE:LINE."""
    for path in files:
        try:
            with path.open(encoding="utf-8") as stream:
                for number, line in enumerate(stream, start=1):
                    if line.strip():
                        yield f"{path}:{number}", line
        except (OSError, UnicodeDecodeError) as exc:
            raise DoctorToolError(f"cannot read {path}: {exc}", ExitCode.FILE_PROBLEM) from None


def _rewrap_line(line: str, old: DoctorPrivateKey, new: DoctorPublicKey) -> tuple[str, ExitCode, str]:
    """(output line or "", failure code, failure reason) for one input line."""
    try:
        record = parse_record(line)
    except RecordError as exc:
        return "", ExitCode.FILE_PROBLEM, f"malformed record: {exc}"
    try:
        header = inspect_escrow_package(record.package).context
        if header != record.context:
            # The export and its package disagree; the package is authoritative for
            # what it can open, but uploading would file it under the wrong patient.
            return "", ExitCode.PACKAGE_REFUSED, "record does not match its package"
        package = rewrap_escrow(old, record.package, new)
    except DecryptionError as exc:
        failure = error_for(exc)
        return "", failure.code, str(failure)
    return render_record(record.context, new.key_id, package), ExitCode.OK, ""


def reescrow(
    files: list[Path],
    old: DoctorPrivateKey,
    new: DoctorPublicKey,
    out: Path,
    *,
    keep_going: bool,
) -> Outcome:
    """Rewrap every record into ``out`` (created 0600, never overwritten).

    Without ``keep_going`` the first failure stops the run and removes ``out``, so a
    half-written file is never uploaded by mistake.
    """
    outcome = Outcome()
    stream: TextIO = open_new_file(out, 0o600)
    try:
        with stream:
            for location, line in _lines(files):
                text, code, reason = _rewrap_line(line, old, new)
                if code is ExitCode.OK:
                    stream.write(text)
                    outcome.done += 1
                    continue
                say(f"{location}: {reason}")
                outcome.failed += 1
                if outcome.first_failure is ExitCode.OK:
                    outcome.first_failure = code
                if not keep_going:
                    raise DoctorToolError(
                        f"stopped at {location}; nothing written (use --keep-going to rewrap the other records)",
                        code,
                    )
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return outcome
