"""Exit codes, errors, passphrases and careful file handling for the doctor's tool.

Nothing here ever holds a patient key except :func:`write_secret_file`, which writes
one to a new 0600 file; messages name files, key ids and contexts, never a key.
"""

from __future__ import annotations

import enum
import getpass
import os
import sys
from pathlib import Path
from typing import TextIO

from carevault_crypto.escrow import (
    DecryptionError,
    DoctorKeyFileError,
    DoctorPrivateKey,
    DoctorPublicKey,
    WrongDoctorKeyError,
    WrongPassphraseError,
    public_key_from_key_file,
)

PROG = "carevault-doctor"
MIN_PASSPHRASE_CHARS = 12


class ExitCode(enum.IntEnum):
    """Documented in docs/operations.md (the hosting doctor's key pair); scripts depend on these values."""

    OK = 0
    USAGE = 2  # bad arguments, or a request the tool refuses (e.g. key to a pipe)
    WRONG_PASSPHRASE = 3  # the passphrase does not open the private key file
    WRONG_DOCTOR_KEY = 4  # the package is sealed to another doctor key
    PACKAGE_REFUSED = 5  # tampered, truncated, or bound to another context
    FILE_PROBLEM = 6  # missing, unreadable, malformed, or would be overwritten
    INTERRUPTED = 130


class DoctorToolError(Exception):
    """A failure reported as one line on stderr and an exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    """Progress and diagnostics go to stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr)


def error_for(exc: DecryptionError) -> DoctorToolError:
    if isinstance(exc, WrongDoctorKeyError):
        return DoctorToolError(str(exc), ExitCode.WRONG_DOCTOR_KEY)
    return DoctorToolError(
        "the escrow package cannot be opened: it was altered, truncated, or is bound to another patient context",
        ExitCode.PACKAGE_REFUSED,
    )


# --- reading ---------------------------------------------------------------------


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DoctorToolError(f"cannot read {what} {path}: {_reason(exc)}", ExitCode.FILE_PROBLEM) from None


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DoctorToolError(f"cannot read {what} {path}: {_reason(exc)}", ExitCode.FILE_PROBLEM) from None


def read_passphrase(passphrase_file: Path | None, *, confirm: bool) -> str:
    """From a file (automation, tests) or typed twice at the terminal (keygen)."""
    if passphrase_file is not None:
        text = read_text(passphrase_file, "passphrase file")
        # The first line, without its line ending; spaces may be part of the passphrase.
        passphrase = text.split("\n", 1)[0].removesuffix("\r")
    else:
        try:
            passphrase = getpass.getpass("Passphrase of the doctor private key: ")
            if confirm and getpass.getpass("Repeat the passphrase: ") != passphrase:
                raise DoctorToolError("the two passphrases differ", ExitCode.USAGE)
        except EOFError:
            raise DoctorToolError("no passphrase given (use --passphrase-file)", ExitCode.USAGE) from None
    if not passphrase:
        raise DoctorToolError("the passphrase is empty", ExitCode.USAGE)
    return passphrase


def public_half(path: Path) -> DoctorPublicKey:
    """The public key of a private key file, read without the passphrase."""
    try:
        return public_key_from_key_file(read_text(path, "private key file"))
    except DoctorKeyFileError as exc:
        raise DoctorToolError(f"{path}: {exc}", ExitCode.FILE_PROBLEM) from None


def load_private_key(path: Path, passphrase_file: Path | None) -> DoctorPrivateKey:
    text = read_text(path, "private key file")
    try:
        public_key_from_key_file(text)  # refuse a malformed file before asking
        return DoctorPrivateKey.from_encrypted_text(text, read_passphrase(passphrase_file, confirm=False))
    except WrongPassphraseError as exc:
        raise DoctorToolError(f"{path}: {exc}", ExitCode.WRONG_PASSPHRASE) from None
    except DoctorKeyFileError as exc:
        raise DoctorToolError(f"{path}: {exc}", ExitCode.FILE_PROBLEM) from None


def load_public_key(path: Path) -> DoctorPublicKey:
    try:
        return DoctorPublicKey.from_text(read_text(path, "public key file"))
    except DoctorKeyFileError as exc:
        raise DoctorToolError(f"{path}: {exc}", ExitCode.FILE_PROBLEM) from None


# --- writing ---------------------------------------------------------------------


def open_new_file(path: Path, mode: int) -> TextIO:
    """Create ``path`` with ``mode``; never overwrite, never follow a planted link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise DoctorToolError(f"refusing to overwrite {path}", ExitCode.FILE_PROBLEM) from None
    except OSError as exc:
        raise DoctorToolError(f"cannot create {path}: {_reason(exc)}", ExitCode.FILE_PROBLEM) from None
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)  # the umask may have narrowed the mode given to open()
    return os.fdopen(fd, "w", encoding="utf-8")


def write_new_file(path: Path, text: str, mode: int) -> None:
    stream = open_new_file(path, mode)
    try:
        with stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise DoctorToolError(f"cannot write {path}: {_reason(exc)}", ExitCode.FILE_PROBLEM) from None


def write_secret_file(path: Path, text: str) -> None:
    write_new_file(path, text, 0o600)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
