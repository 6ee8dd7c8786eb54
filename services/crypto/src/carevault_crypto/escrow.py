"""Escrow of patient keys to the hosting doctor (HPKE, RFC 9180).

keyservice seals each patient key to every active hosting-doctor public key; only the
doctor's offline private key can open the package. The default suite uses the hybrid
ML-KEM-768 + X25519 KEM because escrowed health-data keys must stay confidential for
decades, beyond the expected arrival of quantum computers able to break X25519 alone;
the classic X25519 suite exists for deployments that must interoperate with tools
lacking ML-KEM.

Shape of the API (Tink style): no nonce or randomness parameter anywhere, opaque key
objects that refuse to pickle and print as ``***``, a versioned package that names
its suite and doctor key id, and one :class:`DecryptionError` for every failed open.

Layouts are in :mod:`carevault_crypto._escrow_format`; only this module and that one
may import ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import os
import unicodedata
from typing import Any, NoReturn, Protocol, SupportsIndex

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from carevault_crypto import _escrow_format as fmt

__all__ = [
    "DecryptionError",
    "DoctorKeyFileError",
    "DoctorPrivateKey",
    "DoctorPublicKey",
    "EscrowContext",
    "EscrowError",
    "EscrowPackageInfo",
    "EscrowSuite",
    "EscrowedKey",
    "RevealableKey",
    "WrongDoctorKeyError",
    "WrongPassphraseError",
    "generate_doctor_key",
    "inspect_escrow_package",
    "open_escrow",
    "public_key_from_key_file",
    "rewrap_escrow",
    "seal_escrow",
]


# --- errors ----------------------------------------------------------------------


class EscrowError(Exception):
    """Base of every error raised by this module."""


class DecryptionError(EscrowError):
    """An escrow package could not be opened.

    Raised for every failure (malformed, truncated or tampered package, context
    mismatch, wrong key) with one message, so that the failure reveals nothing more
    than "no".
    """

    MESSAGE = "escrow package could not be opened"

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


class WrongDoctorKeyError(DecryptionError):
    """The package names another doctor key than the one given.

    Checked on the (public) header before any decryption attempt, so a distinct
    message leaks nothing: the doctor learns which key to fetch instead. It is a
    :class:`DecryptionError` so that code catching that still catches everything.
    """

    def __init__(self, package_key_id: str, private_key_id: str) -> None:
        self.package_key_id = package_key_id
        self.private_key_id = private_key_id
        super().__init__(f"escrow package is sealed to doctor key {package_key_id}, not to this key {private_key_id}")


class WrongPassphraseError(EscrowError):
    """The passphrase does not open the private key file (or the file was altered)."""

    def __init__(self) -> None:
        # AES-GCM cannot tell a wrong passphrase from an edited file; say both.
        super().__init__("wrong passphrase, or the private key file was altered")


class DoctorKeyFileError(EscrowError, ValueError):
    """A doctor key file is malformed, of an unknown version, or inconsistent."""


# --- suites ----------------------------------------------------------------------


class EscrowSuite(enum.Enum):
    """HPKE suite of a doctor key; the value is what settings and key files say."""

    HYBRID = "hybrid"  # ML-KEM-768 + X25519 hybrid KEM, HKDF-SHA256, AES-256-GCM
    CLASSIC = "classic"  # DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM


@dataclasses.dataclass(frozen=True)
class _SuiteSpec:
    suite_id: int  # byte 1 of a package; never reuse a retired value
    hpke: hpke.Suite
    public_size: int
    private_size: int
    enc_size: int


_MLKEM_PUBLIC = 1184
_MLKEM_SEED = 64
_X25519_SIZE = 32

_SPECS: dict[EscrowSuite, _SuiteSpec] = {
    EscrowSuite.HYBRID: _SuiteSpec(
        suite_id=0x01,
        hpke=hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
        public_size=_MLKEM_PUBLIC + _X25519_SIZE,
        private_size=_MLKEM_SEED + _X25519_SIZE,
        enc_size=hpke.KEM.MLKEM768_X25519.enc_length(),
    ),
    EscrowSuite.CLASSIC: _SuiteSpec(
        suite_id=0x02,
        hpke=hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
        public_size=_X25519_SIZE,
        private_size=_X25519_SIZE,
        enc_size=hpke.KEM.X25519.enc_length(),
    ),
}
_SUITE_BY_ID = {spec.suite_id: suite for suite, spec in _SPECS.items()}

_HpkePublic = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
_HpkePrivate = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey


def _key_id(suite: EscrowSuite, public_bytes: bytes) -> bytes:
    # 128 bits: short enough to name a file, long enough that nobody can make a key
    # whose id collides with the real doctor key's.
    digest = hashlib.sha256(fmt.KEY_ID_LABEL + bytes([_SPECS[suite].suite_id]) + public_bytes).digest()
    return digest[: fmt.KEY_ID_SIZE]


# --- the escrowed key and its context ----------------------------------------------


class RevealableKey(Protocol):
    """What :func:`seal_escrow` needs of a patient key: its 32 bytes, on request."""

    def _reveal(self) -> bytes: ...


class EscrowedKey:
    """A patient key recovered from a package: opaque, unpicklable, prints ``***``.

    ``to_header()`` is the one way out, in the ``X-Patient-Key`` form (base64url
    without padding), so that the doctor can hand it to the normal API.
    """

    __slots__ = ("__raw",)

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != fmt.PATIENT_KEY_SIZE:
            raise ValueError("a patient key is 32 bytes")
        self.__raw = raw

    @classmethod
    def from_header(cls, value: str) -> EscrowedKey:
        """Parse the ``X-Patient-Key`` form: base64url, no padding, 32 bytes."""
        if not isinstance(value, str) or len(value) != 43 or "=" in value:
            raise ValueError("a patient key is 43 base64url characters without padding")
        try:
            raw = base64.urlsafe_b64decode(value + "=")
        except (binascii.Error, ValueError):
            raise ValueError("a patient key is base64url without padding") from None
        # Reject non-canonical encodings (spare low bits set), so one key has one text.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != value:
            raise ValueError("a patient key is base64url without padding")
        return cls(raw)

    def to_header(self) -> str:
        return base64.urlsafe_b64encode(self.__raw).rstrip(b"=").decode("ascii")

    def _reveal(self) -> bytes:
        return self.__raw

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("a patient key cannot be pickled")

    def __copy__(self) -> EscrowedKey:
        return self  # immutable: copying would only multiply the secret in memory

    def __deepcopy__(self, memo: dict[int, Any]) -> EscrowedKey:
        return self


@dataclasses.dataclass(frozen=True, slots=True)
class EscrowContext:
    """What a package is bound to; a package opens only under this exact context."""

    tenant: str
    patient_id: str
    key_version: int

    def __post_init__(self) -> None:
        fmt.check_identifier("tenant", self.tenant)
        fmt.check_identifier("patient_id", self.patient_id)
        fmt.check_key_version(self.key_version)


@dataclasses.dataclass(frozen=True, slots=True)
class EscrowPackageInfo:
    """The header of a package. Unauthenticated until the package has been opened."""

    format_version: int
    suite: EscrowSuite
    doctor_key_id: str
    context: EscrowContext


# --- doctor keys -------------------------------------------------------------------


class DoctorPublicKey:
    """A hosting-doctor public key: configured in keyservice, safe to publish."""

    __slots__ = ("_hpke_key", "_key_id", "_public_bytes", "_suite")

    def __init__(self, suite: EscrowSuite, public_bytes: bytes) -> None:
        spec = _SPECS[suite]
        if len(public_bytes) != spec.public_size:
            raise DoctorKeyFileError(f"a {suite.value} public key is {spec.public_size} bytes")
        self._suite = suite
        self._public_bytes = bytes(public_bytes)
        self._hpke_key = _load_public(suite, self._public_bytes)
        self._key_id = _key_id(suite, self._public_bytes).hex()

    # Read-only: a key's id and suite follow from its bytes and must not drift.
    @property
    def suite(self) -> EscrowSuite:
        return self._suite

    @property
    def key_id(self) -> str:
        """32 hex characters: SHA-256(label, suite id, public key bytes), truncated."""
        return self._key_id

    def to_text(self) -> str:
        """The public key file: small versioned JSON, see docs/security-escrow.md."""
        return fmt.render_public_key_file(self.suite.value, self.key_id, self._public_bytes)

    @classmethod
    def from_text(cls, text: str) -> DoctorPublicKey:
        try:
            fields = fmt.parse_public_key_file(text)
        except fmt.FormatError as exc:
            raise DoctorKeyFileError(f"not a valid doctor public key file: {exc}") from None
        key = cls(_parse_suite(fields.suite), fields.public_bytes)
        if key.key_id != fields.key_id:  # public values: no need for constant time
            raise DoctorKeyFileError("doctor public key file: key id does not match the key")
        return key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DoctorPublicKey):
            return NotImplemented
        return self.suite is other.suite and self._public_bytes == other._public_bytes

    def __hash__(self) -> int:
        return hash((self.suite, self._public_bytes))

    def __repr__(self) -> str:
        return f"DoctorPublicKey(key_id={self.key_id!r}, suite={self.suite.value})"


class DoctorPrivateKey:
    """The hosting doctor's private key: lives offline, opaque, prints ``***``."""

    __slots__ = ("__hpke_key", "__mlkem", "__public", "__x25519")

    def __init__(
        self,
        mlkem_key: mlkem.MLKEM768PrivateKey | None,
        x25519_key: x25519.X25519PrivateKey,
    ) -> None:
        # Not for callers: use generate_doctor_key() or from_encrypted_text().
        self.__mlkem = mlkem_key
        self.__x25519 = x25519_key
        self.__hpke_key: _HpkePrivate
        if mlkem_key is None:
            self.__hpke_key = x25519_key
            suite = EscrowSuite.CLASSIC
            public_bytes = x25519_key.public_key().public_bytes_raw()
        else:
            self.__hpke_key = hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)
            suite = EscrowSuite.HYBRID
            public_bytes = mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()
        self.__public = DoctorPublicKey(suite, public_bytes)

    @property
    def suite(self) -> EscrowSuite:
        return self.__public.suite

    @property
    def key_id(self) -> str:
        return self.__public.key_id

    def public_key(self) -> DoctorPublicKey:
        return self.__public

    def _hpke_private(self) -> _HpkePrivate:
        return self.__hpke_key

    @classmethod
    def _from_private_bytes(cls, suite: EscrowSuite, raw: bytes) -> DoctorPrivateKey:
        """Rebuild from raw private bytes (ML-KEM seed || X25519 scalar, or scalar).

        Private: used by the key file reader and the test-vector generator only.
        """
        if len(raw) != _SPECS[suite].private_size:
            raise DoctorKeyFileError("private key has the wrong size")
        if suite is EscrowSuite.CLASSIC:
            return cls(None, x25519.X25519PrivateKey.from_private_bytes(raw))
        return cls(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM_SEED]),
            x25519.X25519PrivateKey.from_private_bytes(raw[_MLKEM_SEED:]),
        )

    def _private_bytes(self) -> bytes:
        seed = b"" if self.__mlkem is None else self.__mlkem.private_bytes_raw()
        return seed + self.__x25519.private_bytes_raw()

    # -- the encrypted key file --

    def to_encrypted_text(self, passphrase: str, *, _log2_n: int = 17) -> str:
        """The private key file: versioned JSON, private half sealed by the passphrase.

        scrypt (N=2^17, r=8, p=1: 128 MiB, about a third of a second) then AES-256-GCM
        with every other field of the file as associated data. ``_log2_n`` lets tests
        run faster; the value is recorded in the file, so reading needs no setting.
        """
        params = fmt.ScryptParams(log2_n=_log2_n, r=8, p=1, salt=os.urandom(16))
        _check_scrypt_params(params)
        fields = fmt.PrivateKeyFields(
            suite=self.suite.value,
            key_id=self.key_id,
            public_bytes=self.__public._public_bytes,
            kdf=params,
            cipher="AES-256-GCM",
            nonce=os.urandom(12),  # fresh key per file anyway (fresh salt); never reused
            ciphertext=b"",
        )
        sealed = AESGCM(_passphrase_key(passphrase, params)).encrypt(fields.nonce, self._private_bytes(), fields.aad())
        return fmt.render_private_key_file(dataclasses.replace(fields, ciphertext=sealed))

    @classmethod
    def from_encrypted_text(cls, text: str, passphrase: str) -> DoctorPrivateKey:
        fields, public = _read_private_key_file(text)
        _check_scrypt_params(fields.kdf)
        if fields.cipher != "AES-256-GCM" or len(fields.nonce) != 12:
            raise DoctorKeyFileError("doctor private key file: unsupported cipher")
        try:
            raw = AESGCM(_passphrase_key(passphrase, fields.kdf)).decrypt(fields.nonce, fields.ciphertext, fields.aad())
        except InvalidTag:
            raise WrongPassphraseError() from None
        key = cls._from_private_bytes(public.suite, raw)
        if key.public_key() != public:
            # Authenticated above, so only a writer bug gets here; still refuse.
            raise DoctorKeyFileError("doctor private key file: halves do not match")
        return key

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("a doctor private key cannot be pickled")

    def __copy__(self) -> DoctorPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> DoctorPrivateKey:
        return self


def generate_doctor_key(suite: EscrowSuite = EscrowSuite.HYBRID) -> DoctorPrivateKey:
    """A fresh doctor key pair (run on the doctor's offline machine)."""
    x25519_key = x25519.X25519PrivateKey.generate()
    if suite is EscrowSuite.CLASSIC:
        return DoctorPrivateKey(None, x25519_key)
    return DoctorPrivateKey(mlkem.MLKEM768PrivateKey.generate(), x25519_key)


def public_key_from_key_file(text: str) -> DoctorPublicKey:
    """The public half stored in clear in a private key file, without the passphrase.

    Not authenticated until the file is opened with its passphrase: for display,
    or checked afterwards against ``DoctorPrivateKey.public_key()``.
    """
    return _read_private_key_file(text)[1]


def _read_private_key_file(text: str) -> tuple[fmt.PrivateKeyFields, DoctorPublicKey]:
    try:
        fields = fmt.parse_private_key_file(text)
    except fmt.FormatError as exc:
        raise DoctorKeyFileError(f"not a valid doctor private key file: {exc}") from None
    public = DoctorPublicKey(_parse_suite(fields.suite), fields.public_bytes)
    if public.key_id != fields.key_id:
        raise DoctorKeyFileError("doctor private key file: key id does not match the key")
    return fields, public


def _check_scrypt_params(params: fmt.ScryptParams) -> None:
    # Bounds protect the offline machine from a file that asks for absurd work, and
    # refuse a file made too cheap to resist guessing.
    if not (14 <= params.log2_n <= 22 and 1 <= params.r <= 32 and 1 <= params.p <= 16):
        raise DoctorKeyFileError("doctor private key file: unsupported scrypt parameters")
    if 128 * params.r * params.p * 2**params.log2_n > 2**31 or len(params.salt) < 16:
        raise DoctorKeyFileError("doctor private key file: unsupported scrypt parameters")


def _passphrase_key(passphrase: str, params: fmt.ScryptParams) -> bytes:
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("the passphrase must be a non-empty str")
    # NFC: the same passphrase typed on two systems must give the same bytes.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    kdf = Scrypt(salt=params.salt, length=32, n=2**params.log2_n, r=params.r, p=params.p)
    return kdf.derive(secret)


def _parse_suite(value: str) -> EscrowSuite:
    try:
        return EscrowSuite(value)
    except ValueError:
        raise DoctorKeyFileError(f"unknown escrow suite {value!r}") from None


def _load_public(suite: EscrowSuite, raw: bytes) -> _HpkePublic:
    try:
        if suite is EscrowSuite.CLASSIC:
            return x25519.X25519PublicKey.from_public_bytes(raw)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PUBLIC]),
            x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM_PUBLIC:]),
        )
    except ValueError:
        raise DoctorKeyFileError(f"not a valid {suite.value} public key") from None


# --- packages ----------------------------------------------------------------------


def seal_escrow(public_key: DoctorPublicKey, patient_key: RevealableKey, ctx: EscrowContext) -> bytes:
    """Seal a patient key to a doctor public key, bound to ``ctx`` and the key id."""
    if not isinstance(public_key, DoctorPublicKey):
        raise TypeError("public_key must be a DoctorPublicKey")
    if not isinstance(ctx, EscrowContext):
        raise TypeError("ctx must be an EscrowContext")
    raw = patient_key._reveal()
    if not isinstance(raw, bytes) or len(raw) != fmt.PATIENT_KEY_SIZE:
        raise ValueError("a patient key is 32 bytes")
    spec = _SPECS[public_key.suite]
    header = fmt.encode_header(
        spec.suite_id,
        bytes.fromhex(public_key.key_id),
        ctx.tenant,
        ctx.patient_id,
        ctx.key_version,
    )
    sealed = spec.hpke.encrypt(raw, public_key._hpke_key, info=fmt.hpke_info(header))
    return header + sealed


def inspect_escrow_package(package: bytes) -> EscrowPackageInfo:
    """Read a package's header without opening it (the header is not yet trusted)."""
    parsed = _parse(package)
    return EscrowPackageInfo(
        format_version=parsed.version,
        suite=_SUITE_BY_ID[parsed.suite_id],
        doctor_key_id=parsed.key_id.hex(),
        context=EscrowContext(parsed.tenant, parsed.patient_id, parsed.key_version),
    )


def open_escrow(private_key: DoctorPrivateKey, package: bytes, ctx: EscrowContext | None = None) -> EscrowedKey:
    """Open a package with the doctor's private key.

    With ``ctx``, the package must be bound to exactly that context. Without it, the
    context is the one in the header, which HPKE authenticates: after a successful
    open, :func:`inspect_escrow_package` on the same bytes tells the truth.
    Raises :class:`WrongDoctorKeyError` (before decrypting) or :class:`DecryptionError`.
    """
    if not isinstance(private_key, DoctorPrivateKey):
        raise TypeError("private_key must be a DoctorPrivateKey")
    parsed = _parse(package)
    suite = _SUITE_BY_ID[parsed.suite_id]
    if suite is not private_key.suite or parsed.key_id.hex() != private_key.key_id:
        raise WrongDoctorKeyError(parsed.key_id.hex(), private_key.key_id)
    if ctx is not None and ctx != EscrowContext(parsed.tenant, parsed.patient_id, parsed.key_version):
        raise DecryptionError()
    spec = _SPECS[suite]
    if len(parsed.sealed) != spec.enc_size + fmt.PATIENT_KEY_SIZE + fmt.AEAD_TAG_SIZE:
        raise DecryptionError()
    try:
        raw = spec.hpke.decrypt(
            parsed.sealed,
            private_key._hpke_private(),
            info=fmt.hpke_info(parsed.header),
        )
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
    if len(raw) != fmt.PATIENT_KEY_SIZE:  # pragma: no cover - sealed length checked
        raise DecryptionError()
    return EscrowedKey(raw)


def rewrap_escrow(old_private: DoctorPrivateKey, package: bytes, new_public: DoctorPublicKey) -> bytes:
    """Reseal a package from an old doctor key to a new public key, same context.

    For bulk re-escrow on the doctor's offline machine after a key rotation; the
    suite may change (for example classic to hybrid).
    """
    key = open_escrow(old_private, package)
    # Opened, so the header (and thus its context) is authentic.
    return seal_escrow(new_public, key, inspect_escrow_package(package).context)


def _parse(package: bytes) -> fmt.ParsedPackage:
    try:
        parsed = fmt.parse_package(package)
    except fmt.FormatError:
        raise DecryptionError() from None
    if parsed.suite_id not in _SUITE_BY_ID:
        raise DecryptionError()
    return parsed
