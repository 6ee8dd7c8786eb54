"""Byte and text layouts of escrow packages and hosting-doctor key files.

Private to :mod:`carevault_crypto.escrow`. This module only lays bytes out and reads
them back; it holds no key and does no cryptography, so that a reviewer can check
the formats against docs/security-escrow.md without reading crypto code.

Escrow package, format version 1 (all integers big-endian)::

    offset  size  field
    0       1     format version (0x01)
    1       1     suite id (0x01 hybrid, 0x02 classic)
    2       16    doctor key id
    18      2     n = length of tenant, UTF-8 bytes
    20      n     tenant
    20+n    2     m = length of patient id, UTF-8 bytes
    22+n    m     patient id
    22+n+m  4     patient key version
    26+n+m  ...   HPKE single-shot ciphertext: enc || AES-256-GCM(patient key)

Everything before the HPKE ciphertext is the *header*. The HPKE ``info`` is
``INFO_LABEL || header``, so the header is authenticated by the HPKE key schedule:
changing any header byte (context, key id, suite, version) makes opening fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

PACKAGE_VERSION = 1
KEY_ID_SIZE = 16
MAX_ID_BYTES = 255
MAX_KEY_VERSION = 2**32 - 1
PATIENT_KEY_SIZE = 32
AEAD_TAG_SIZE = 16

# Domain separation: these bytes never appear as the info of any other HPKE use of a
# doctor key, so a package cannot be confused with some future message type.
INFO_LABEL = b"carevault-escrow\x00"
KEY_ID_LABEL = b"carevault-doctor-key-id\x00"
KEY_FILE_AAD_LABEL = b"carevault-doctor-private-key\x00"

PUBLIC_KEY_FORMAT = "carevault-doctor-public-key"
PRIVATE_KEY_FORMAT = "carevault-doctor-private-key"
KEY_FILE_VERSION = 1
PRIVATE_KEY_WARNING = "Hosting-doctor private escrow key, encrypted with a passphrase. Keep it offline; never copy it into the cluster."

_FIXED_HEAD = struct.Struct(">BB16s")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class FormatError(ValueError):
    """A package or key file does not follow its layout (mapped to public errors)."""


@dataclass(frozen=True, slots=True)
class ParsedPackage:
    """The fields of a package; the header is unauthenticated until HPKE opens."""

    version: int
    suite_id: int
    key_id: bytes
    tenant: str
    patient_id: str
    key_version: int
    header: bytes
    sealed: bytes


def check_identifier(name: str, value: object) -> bytes:
    """UTF-8 bytes of a context identifier, refusing what the layout cannot carry."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode text") from None
    if not raw or len(raw) > MAX_ID_BYTES:
        raise ValueError(f"{name} must be 1 to {MAX_ID_BYTES} UTF-8 bytes long")
    return raw


def check_key_version(value: object) -> int:
    # bool is an int subclass; True as a key version is a bug, not version 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("key_version must be an int")
    if not 0 <= value <= MAX_KEY_VERSION:
        raise ValueError(f"key_version must be between 0 and {MAX_KEY_VERSION}")
    return value


def encode_header(suite_id: int, key_id: bytes, tenant: str, patient_id: str, key_version: int) -> bytes:
    if len(key_id) != KEY_ID_SIZE:
        raise ValueError("doctor key id has the wrong size")
    tenant_raw = check_identifier("tenant", tenant)
    patient_raw = check_identifier("patient_id", patient_id)
    return b"".join(
        (
            _FIXED_HEAD.pack(PACKAGE_VERSION, suite_id, key_id),
            _U16.pack(len(tenant_raw)),
            tenant_raw,
            _U16.pack(len(patient_raw)),
            patient_raw,
            _U32.pack(check_key_version(key_version)),
        )
    )


def hpke_info(header: bytes) -> bytes:
    return INFO_LABEL + header


def parse_package(package: bytes) -> ParsedPackage:
    """Split a package into header fields and HPKE ciphertext, strictly."""
    if not isinstance(package, bytes | bytearray | memoryview):
        raise TypeError("an escrow package is bytes")
    data = bytes(package)
    if len(data) < _FIXED_HEAD.size:
        raise FormatError("package too short")
    version, suite_id, key_id = _FIXED_HEAD.unpack_from(data, 0)
    if version != PACKAGE_VERSION:
        raise FormatError("unsupported package format version")
    offset = _FIXED_HEAD.size
    tenant, offset = _read_identifier(data, offset)
    patient_id, offset = _read_identifier(data, offset)
    if len(data) < offset + _U32.size:
        raise FormatError("package too short")
    (key_version,) = _U32.unpack_from(data, offset)
    offset += _U32.size
    return ParsedPackage(
        version=version,
        suite_id=suite_id,
        key_id=key_id,
        tenant=tenant,
        patient_id=patient_id,
        key_version=key_version,
        header=data[:offset],
        sealed=data[offset:],
    )


def _read_identifier(data: bytes, offset: int) -> tuple[str, int]:
    if len(data) < offset + _U16.size:
        raise FormatError("package too short")
    (length,) = _U16.unpack_from(data, offset)
    offset += _U16.size
    if not 0 < length <= MAX_ID_BYTES or len(data) < offset + length:
        raise FormatError("bad identifier length")
    try:
        text = data[offset : offset + length].decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("identifier is not UTF-8") from None
    return text, offset + length


def length_prefixed(*fields: bytes) -> bytes:
    """Canonical encoding of a tuple of byte strings: u32 length before each one."""
    return b"".join(_U32.pack(len(f)) + f for f in fields)


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(name: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise FormatError(f"{name} must be a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise FormatError(f"{name} is not valid base64") from None


# --- key files -------------------------------------------------------------------
# JSON, because a doctor must be able to look at a key file and see what it is, and
# because JSON parsers exist everywhere the file might have to be read in 20 years.


def render_public_key_file(suite: str, key_id: str, public_bytes: bytes) -> str:
    document = {
        "format": PUBLIC_KEY_FORMAT,
        "version": KEY_FILE_VERSION,
        "suite": suite,
        "key_id": key_id,
        "public_key": b64encode(public_bytes),
    }
    return json.dumps(document, indent=2) + "\n"


@dataclass(frozen=True, slots=True)
class PublicKeyFields:
    suite: str
    key_id: str
    public_bytes: bytes


def parse_public_key_file(text: str) -> PublicKeyFields:
    document = _load_document(text, PUBLIC_KEY_FORMAT)
    return PublicKeyFields(
        suite=_get_str(document, "suite"),
        key_id=_get_str(document, "key_id"),
        public_bytes=b64decode("public_key", document.get("public_key")),
    )


@dataclass(frozen=True, slots=True)
class ScryptParams:
    log2_n: int
    r: int
    p: int
    salt: bytes


@dataclass(frozen=True, slots=True)
class PrivateKeyFields:
    suite: str
    key_id: str
    public_bytes: bytes
    kdf: ScryptParams
    cipher: str
    nonce: bytes
    ciphertext: bytes

    def aad(self) -> bytes:
        """Everything in the file but the ciphertext and the comment, canonically.

        Used as AES-GCM associated data, so that swapping the public key, the key
        id or the KDF parameters in the file is detected like a wrong passphrase.
        """
        return length_prefixed(
            KEY_FILE_AAD_LABEL,
            _U32.pack(KEY_FILE_VERSION),
            self.suite.encode(),
            self.key_id.encode(),
            self.public_bytes,
            b"scrypt",
            _U32.pack(self.kdf.log2_n),
            _U32.pack(self.kdf.r),
            _U32.pack(self.kdf.p),
            self.kdf.salt,
            self.cipher.encode(),
            self.nonce,
        )


def render_private_key_file(fields: PrivateKeyFields) -> str:
    document = {
        "format": PRIVATE_KEY_FORMAT,
        "version": KEY_FILE_VERSION,
        "comment": PRIVATE_KEY_WARNING,
        "suite": fields.suite,
        "key_id": fields.key_id,
        "public_key": b64encode(fields.public_bytes),
        "kdf": {
            "name": "scrypt",
            "log2_n": fields.kdf.log2_n,
            "r": fields.kdf.r,
            "p": fields.kdf.p,
            "salt": b64encode(fields.kdf.salt),
        },
        "cipher": fields.cipher,
        "nonce": b64encode(fields.nonce),
        "ciphertext": b64encode(fields.ciphertext),
    }
    return json.dumps(document, indent=2) + "\n"


def parse_private_key_file(text: str) -> PrivateKeyFields:
    document = _load_document(text, PRIVATE_KEY_FORMAT)
    kdf = document.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise FormatError("unsupported key derivation function")
    return PrivateKeyFields(
        suite=_get_str(document, "suite"),
        key_id=_get_str(document, "key_id"),
        public_bytes=b64decode("public_key", document.get("public_key")),
        kdf=ScryptParams(
            log2_n=_get_int(kdf, "log2_n"),
            r=_get_int(kdf, "r"),
            p=_get_int(kdf, "p"),
            salt=b64decode("salt", kdf.get("salt")),
        ),
        cipher=_get_str(document, "cipher"),
        nonce=b64decode("nonce", document.get("nonce")),
        ciphertext=b64decode("ciphertext", document.get("ciphertext")),
    )


def _load_document(text: str, expected_format: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        raise FormatError("not a JSON document") from None
    if not isinstance(document, dict):
        raise FormatError("not a JSON object")
    if document.get("format") != expected_format:
        raise FormatError(f"not a {expected_format} file")
    if document.get("version") != KEY_FILE_VERSION:
        raise FormatError(f"unsupported {expected_format} version")
    return document


def _get_str(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str):
        raise FormatError(f"{name} must be a string")
    return value


def _get_int(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"{name} must be an integer")
    return value
