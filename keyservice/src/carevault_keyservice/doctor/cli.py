"""carevault-doctor: the hosting doctor's offline tool.

Runs on the doctor's own, offline machine. It never opens a network connection: the
doctor carries packages and public keys to and from the platform by hand.

Subcommands::

    keygen --out FILE [--suite hybrid|classic]      new pair: FILE (0600), FILE.pub
    public-key --key FILE [--verify]                print the public key file
    open --key FILE --package PKG [--out KEYFILE | --print]
                                                    recover one patient key
    re-escrow --old-key FILE --new-public FILE --in DIR_OR_JSONL --out FILE
              [--keep-going]                        rewrap packages to a new key

The passphrase is asked at the terminal (twice for keygen), or read from the first
line of ``--passphrase-file`` for automation.

Exit codes: 0 done · 2 usage, or a refused request (such as writing a patient key to
a pipe) · 3 wrong passphrase · 4 package sealed to another doctor key · 5 package
altered, truncated or bound to another patient context · 6 file missing, unreadable,
malformed, or already existing · 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from carevault_crypto.escrow import (
    DecryptionError,
    DoctorKeyFileError,
    DoctorPublicKey,
    EscrowContext,
    EscrowSuite,
    WrongDoctorKeyError,
    generate_doctor_key,
    inspect_escrow_package,
    open_escrow,
    public_key_from_key_file,
)
from carevault_crypto.export import patient_key_to_header
from carevault_keyservice.doctor._common import (
    MIN_PASSPHRASE_CHARS,
    PROG,
    DoctorToolError,
    ExitCode,
    error_for,
    load_private_key,
    load_public_key,
    public_half,
    read_bytes,
    read_passphrase,
    read_text,
    say,
    write_new_file,
    write_secret_file,
)
from carevault_keyservice.doctor.records import (
    RecordError,
    decode_package_text,
    parse_record,
)
from carevault_keyservice.doctor.reescrow import input_files, reescrow

Handler = Callable[[argparse.Namespace], ExitCode]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)
    handler: Handler = args.handler
    try:
        return int(handler(args))
    except DoctorToolError as exc:
        say(f"{PROG}: error: {exc}")
        return int(exc.code)
    except KeyboardInterrupt:
        say(f"{PROG}: interrupted")
        return int(ExitCode.INTERRUPTED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The hosting doctor's offline tool for carevault escrow packages.",
        epilog="Exit codes: 0 done, 2 usage or refused, 3 wrong passphrase, "
        "4 package for another doctor key, 5 package altered or for another context, "
        "6 file problem.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = commands.add_parser("keygen", help="make a new doctor key pair")
    keygen.add_argument("--out", type=Path, required=True, help="private key file to create")
    keygen.add_argument(
        "--suite",
        choices=[s.value for s in EscrowSuite],
        default=EscrowSuite.HYBRID.value,
        help="HPKE suite (default: hybrid, ML-KEM-768 + X25519)",
    )
    _passphrase_option(keygen)
    keygen.set_defaults(handler=cmd_keygen)

    public = commands.add_parser("public-key", help="print the public key file")
    public.add_argument("--key", type=Path, required=True, help="private (or .pub) key file")
    public.add_argument(
        "--verify",
        action="store_true",
        help="open the private key with its passphrase first, to prove the pair",
    )
    _passphrase_option(public)
    public.set_defaults(handler=cmd_public_key)

    opener = commands.add_parser("open", help="recover one patient key from its package")
    opener.add_argument("--key", type=Path, required=True, help="doctor private key file")
    opener.add_argument(
        "--package",
        type=Path,
        required=True,
        help="package file: binary, base64 text, or one JSON escrow record",
    )
    output = opener.add_mutually_exclusive_group()
    output.add_argument("--out", type=Path, help="write the patient key here (mode 0600)")
    output.add_argument(
        "--print",
        dest="print_key",
        action="store_true",
        help="print the patient key even if stdout is not a terminal",
    )
    opener.add_argument("--tenant", help="refuse unless the package is for this tenant")
    opener.add_argument("--patient-id", help="refuse unless the package is for this patient")
    opener.add_argument("--key-version", type=int, help="refuse unless for this key version")
    _passphrase_option(opener)
    opener.set_defaults(handler=cmd_open)

    rewrap = commands.add_parser("re-escrow", help="rewrap packages to a new doctor key")
    rewrap.add_argument("--old-key", type=Path, required=True, help="old private key file")
    rewrap.add_argument("--new-public", type=Path, required=True, help="new public key file")
    rewrap.add_argument(
        "--in",
        dest="source",
        type=Path,
        required=True,
        help="JSON-lines export, or a directory of *.jsonl files",
    )
    rewrap.add_argument("--out", type=Path, required=True, help="JSON-lines file to create")
    rewrap.add_argument(
        "--keep-going",
        action="store_true",
        help="rewrap what can be and report the rest (exit code of the first failure)",
    )
    _passphrase_option(rewrap)
    rewrap.set_defaults(handler=cmd_reescrow)
    return parser


def _passphrase_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        help="read the passphrase from the first line of this file instead of asking",
    )


def _refuse_existing(*paths: Path) -> None:
    # Checked before asking for a passphrase; the exclusive create is the real guard.
    for path in paths:
        if path.exists() or path.is_symlink():
            raise DoctorToolError(f"refusing to overwrite {path}", ExitCode.FILE_PROBLEM)


# --- keygen / public-key -------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> ExitCode:
    out: Path = args.out
    public_path = out.with_name(out.name + ".pub")
    _refuse_existing(out, public_path)
    passphrase = read_passphrase(args.passphrase_file, confirm=True)
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise DoctorToolError(
            f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters",
            ExitCode.USAGE,
        )
    key = generate_doctor_key(EscrowSuite(args.suite))
    write_secret_file(out, key.to_encrypted_text(passphrase))
    try:
        write_new_file(public_path, key.public_key().to_text(), 0o644)
    except DoctorToolError:
        out.unlink(missing_ok=True)  # a private key without its public half is useless
        raise
    print(key.key_id)
    say(f"private key (encrypted, mode 0600): {out}")
    say(f"public key: {public_path}  suite: {key.suite.value}  key id: {key.key_id}")
    say("Keep the private key offline, with a backup; give only the .pub file to ops.")
    return ExitCode.OK


def cmd_public_key(args: argparse.Namespace) -> ExitCode:
    text = read_text(args.key, "key file")
    try:
        public = public_key_from_key_file(text)
    except DoctorKeyFileError:
        if args.verify:
            raise DoctorToolError(f"{args.key}: --verify needs the private key file", ExitCode.USAGE) from None
        public = load_public_key(args.key)
    if args.verify:
        # Opening authenticates the public half stored in the file.
        load_private_key(args.key, args.passphrase_file)
        say(f"verified: the passphrase opens the private key of {public.key_id}")
    sys.stdout.write(public.to_text())
    return ExitCode.OK


# --- open ----------------------------------------------------------------------------


def cmd_open(args: argparse.Namespace) -> ExitCode:
    if args.out is None and not args.print_key and not sys.stdout.isatty():
        raise DoctorToolError(
            "stdout is not a terminal: refusing to write a patient key there; use --out FILE (created with mode 0600) or --print",
            ExitCode.USAGE,
        )
    if args.out is not None:
        _refuse_existing(args.out)
    package, claimed = _read_package(args.package)
    try:
        info = inspect_escrow_package(package)
    except DecryptionError as exc:
        raise error_for(exc) from None
    _check_expected(info.context, claimed, args)
    public: DoctorPublicKey = public_half(args.key)
    if info.doctor_key_id != public.key_id:
        # Say so before asking for the passphrase; the package needs another key.
        raise error_for(WrongDoctorKeyError(info.doctor_key_id, public.key_id))
    private = load_private_key(args.key, args.passphrase_file)
    try:
        patient_key = open_escrow(private, package, info.context)
    except DecryptionError as exc:
        raise error_for(exc) from None
    ctx = info.context
    say(
        f"opened the escrow package of tenant {ctx.tenant!r}, "
        f"patient {ctx.patient_id!r}, key version {ctx.key_version} "
        f"(doctor key {info.doctor_key_id})"
    )
    if args.out is not None:
        write_secret_file(args.out, patient_key_to_header(patient_key) + "\n")
        say(f"patient key written to {args.out} (mode 0600); delete it after use")
    else:
        print(patient_key_to_header(patient_key))
    return ExitCode.OK


def _read_package(path: Path) -> tuple[bytes, EscrowContext | None]:
    """The package, and the context a JSON escrow record claims for it, if any."""
    data = read_bytes(path, "package file")
    # A binary package starts with its format version, a control byte; base64 text
    # and JSON start with printable characters, so the three forms cannot be confused.
    if data[:1] and data[0] < 0x20:
        return data, None
    try:
        text = data.decode("utf-8")
        if text.lstrip().startswith("{"):
            record = parse_record(text)
            return record.package, record.context
        return decode_package_text(text), None
    except (UnicodeDecodeError, RecordError) as exc:
        raise DoctorToolError(
            f"{path} is not an escrow package (binary, base64 or JSON record): {exc}",
            ExitCode.FILE_PROBLEM,
        ) from None


def _check_expected(actual: EscrowContext, claimed: EscrowContext | None, args: argparse.Namespace) -> None:
    expected = {
        "tenant": args.tenant,
        "patient_id": args.patient_id,
        "key_version": args.key_version,
    }
    if claimed is not None:
        for name in expected:
            if expected[name] is None:
                expected[name] = getattr(claimed, name)
            elif expected[name] != getattr(claimed, name):
                raise DoctorToolError(
                    f"the escrow record is for {name} {getattr(claimed, name)!r}, not {expected[name]!r}",
                    ExitCode.PACKAGE_REFUSED,
                )
    for name, value in expected.items():
        if value is not None and getattr(actual, name) != value:
            raise DoctorToolError(
                f"the escrow package is bound to {name} {getattr(actual, name)!r}, not {value!r}; refusing to open it",
                ExitCode.PACKAGE_REFUSED,
            )


# --- re-escrow ------------------------------------------------------------------------


def cmd_reescrow(args: argparse.Namespace) -> ExitCode:
    files = input_files(args.source)
    new_public = load_public_key(args.new_public)
    old_public = public_half(args.old_key)
    if old_public.key_id == new_public.key_id:
        raise DoctorToolError("the new public key is the old key; nothing to re-escrow", ExitCode.USAGE)
    _refuse_existing(args.out)
    old_private = load_private_key(args.old_key, args.passphrase_file)
    outcome = reescrow(files, old_private, new_public, args.out, keep_going=args.keep_going)
    say(
        f"re-escrowed {outcome.done} package(s) from doctor key {old_private.key_id} "
        f"to {new_public.key_id} into {args.out}" + (f"; {outcome.failed} failed (see above)" if outcome.failed else "")
    )
    print(json.dumps({"rewrapped": outcome.done, "failed": outcome.failed}))
    return outcome.first_failure
