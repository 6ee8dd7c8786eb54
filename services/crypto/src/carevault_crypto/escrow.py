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

The patient key is the platform's :class:`~carevault_crypto.keys.PatientKey`, in and
out; it leaves its object only through :mod:`carevault_crypto.export`.
:class:`DecryptionError` is the package's one
:class:`carevault_crypto.errors.DecryptionError`, re-exported here because
:func:`open_escrow` raises it.

Layouts are in :mod:`carevault_crypto._escrow_format`; the primitives (HPKE, scrypt,
AES-GCM, SHA-256, randomness) are called through :mod:`carevault_crypto._primitives`.
"""

from __future__ import annotations

import dataclasses
import enum
import unicodedata
from typing import Any

from carevault_crypto import _escrow_format as fmt
from carevault_crypto import _primitives
from carevault_crypto._opaque import Opaque
from carevault_crypto.errors import DecryptionError
from carevault_crypto.keys import PatientKey, _patient_key_from_raw

__all__ = [
    "DecryptionError",
    "DoctorKeyFileError",
    "DoctorPrivateKey",
    "DoctorPublicKey",
    "EscrowContext",
    "EscrowPackageInfo",
    "EscrowSuite",
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


# A package that cannot be opened (malformed, truncated or tampered, context mismatch,
# wrong key) raises the shared DecryptionError, whose message never varies.


class WrongDoctorKeyError(DecryptionError):
    """The package names another doctor key than the one given.

    Checked on the (public) header before any decryption attempt, so a distinct
    message leaks nothing: the doctor learns which key to fetch instead. It is a
    :class:`DecryptionError` so that code catching that still catches everything;
    it is the only one whose message is not the fixed "decryption failed" (it names
    the two public key ids).
    """

    def __init__(self, package_key_id: str, private_key_id: str) -> None:
        super().__init__()  # DecryptionError drops arguments; set the message below
        self.package_key_id = package_key_id
        self.private_key_id = private_key_id
        self.args = (f"escrow package is sealed to doctor key {package_key_id}, not to this key {private_key_id}",)


class WrongPassphraseError(Exception):
    """The passphrase does not open the private key file (or the file was altered)."""

    def __init__(self) -> None:
        # AES-GCM cannot tell a wrong passphrase from an edited file; say both.
        super().__init__("wrong passphrase, or the private key file was altered")


class DoctorKeyFileError(ValueError):
    """A doctor key file is malformed, of an unknown version, or inconsistent."""


# --- suites ----------------------------------------------------------------------


class EscrowSuite(enum.Enum):
    """HPKE suite of a doctor key; the value is what settings and key files say."""

    HYBRID = "hybrid"  # ML-KEM-768 + X25519 hybrid KEM, HKDF-SHA256, AES-256-GCM
    CLASSIC = "classic"  # DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM


@dataclasses.dataclass(frozen=True)
class _SuiteSpec:
    suite_id: int  # byte 1 of a package; never reuse a retired value
    kem: _primitives.HpkeKem  # KDF HKDF-SHA256 and AEAD AES-256-GCM in both suites


_SPECS: dict[EscrowSuite, _SuiteSpec] = {
    EscrowSuite.HYBRID: _SuiteSpec(suite_id=0x01, kem=_primitives.HpkeKem.MLKEM768_X25519),
    EscrowSuite.CLASSIC: _SuiteSpec(suite_id=0x02, kem=_primitives.HpkeKem.X25519),
}
_SUITE_BY_ID = {spec.suite_id: suite for suite, spec in _SPECS.items()}


def _key_id(suite: EscrowSuite, public_bytes: bytes) -> bytes:
    # 128 bits: short enough to name a file, long enough that nobody can make a key
    # whose id collides with the real doctor key's.
    digest = _primitives.sha256(fmt.KEY_ID_LABEL + bytes([_SPECS[suite].suite_id]) + public_bytes)
    return digest[: fmt.KEY_ID_SIZE]


# --- the context of a package ------------------------------------------------------


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
        kem = _SPECS[suite].kem
        if len(public_bytes) != kem.public_size:
            raise DoctorKeyFileError(f"a {suite.value} public key is {kem.public_size} bytes")
        self._suite = suite
        self._public_bytes = bytes(public_bytes)
        try:
            self._hpke_key = _primitives.hpke_public_key(kem, self._public_bytes)
        except ValueError:
            raise DoctorKeyFileError(f"not a valid {suite.value} public key") from None
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


class DoctorPrivateKey(Opaque):
    """The hosting doctor's private key: lives offline, opaque, prints ``***``."""

    __slots__ = ("__hpke_key", "__public")

    def __init__(self, suite: EscrowSuite, hpke_key: _primitives.HpkePrivateKey) -> None:
        # Not for callers: use generate_doctor_key() or from_encrypted_text().
        self.__hpke_key = hpke_key
        self.__public = DoctorPublicKey(suite, _primitives.hpke_public_bytes(hpke_key))

    @property
    def suite(self) -> EscrowSuite:
        return self.__public.suite

    @property
    def key_id(self) -> str:
        return self.__public.key_id

    def public_key(self) -> DoctorPublicKey:
        return self.__public

    def _hpke_private(self) -> _primitives.HpkePrivateKey:
        return self.__hpke_key

    @classmethod
    def _from_private_bytes(cls, suite: EscrowSuite, raw: bytes) -> DoctorPrivateKey:
        """Rebuild from raw private bytes (ML-KEM seed || X25519 scalar, or scalar).

        Private: used by the key file reader and the test-vector generator only.
        """
        try:
            hpke_key = _primitives.hpke_private_key(_SPECS[suite].kem, raw)
        except ValueError:
            raise DoctorKeyFileError("private key has the wrong size") from None
        return cls(suite, hpke_key)

    def _private_bytes(self) -> bytes:
        return _primitives.hpke_private_bytes(self.__hpke_key)

    # -- the encrypted key file --

    def to_encrypted_text(self, passphrase: str, *, _log2_n: int = 17) -> str:
        """The private key file: versioned JSON, private half sealed by the passphrase.

        scrypt (N=2^17, r=8, p=1: 128 MiB, about a third of a second) then AES-256-GCM
        with every other field of the file as associated data. ``_log2_n`` lets tests
        run faster; the value is recorded in the file, so reading needs no setting.
        """
        params = fmt.ScryptParams(log2_n=_log2_n, r=8, p=1, salt=_primitives.random_bytes(16))
        _check_scrypt_params(params)
        fields = fmt.PrivateKeyFields(
            suite=self.suite.value,
            key_id=self.key_id,
            public_bytes=self.__public._public_bytes,
            kdf=params,
            cipher="AES-256-GCM",
            nonce=b"",  # drawn by the sealing below; fresh key per file anyway (fresh salt)
            ciphertext=b"",
        )
        nonce, sealed = _primitives.aesgcm_seal_nonce_in_ad(
            _passphrase_key(passphrase, params),
            self._private_bytes(),
            lambda nonce: dataclasses.replace(fields, nonce=nonce).aad(),
        )
        return fmt.render_private_key_file(dataclasses.replace(fields, nonce=nonce, ciphertext=sealed))

    @classmethod
    def from_encrypted_text(cls, text: str, passphrase: str) -> DoctorPrivateKey:
        fields, public = _read_private_key_file(text)
        _check_scrypt_params(fields.kdf)
        if fields.cipher != "AES-256-GCM" or len(fields.nonce) != _primitives.NONCE_SIZE:
            raise DoctorKeyFileError("doctor private key file: unsupported cipher")
        try:
            raw = _primitives.aesgcm_open_with_nonce(_passphrase_key(passphrase, fields.kdf), fields.nonce, fields.ciphertext, fields.aad())
        except DecryptionError:
            raise WrongPassphraseError() from None
        key = cls._from_private_bytes(public.suite, raw)
        if key.public_key() != public:
            # Authenticated above, so only a writer bug gets here; still refuse.
            raise DoctorKeyFileError("doctor private key file: halves do not match")
        return key

    # Immutable: a copy may be the key itself (pickling stays refused).
    def __copy__(self) -> DoctorPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> DoctorPrivateKey:
        return self


def generate_doctor_key(suite: EscrowSuite = EscrowSuite.HYBRID) -> DoctorPrivateKey:
    """A fresh doctor key pair (run on the doctor's offline machine)."""
    return DoctorPrivateKey(suite, _primitives.hpke_generate(_SPECS[suite].kem))


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
    return _primitives.scrypt(secret, salt=params.salt, log2_n=params.log2_n, r=params.r, p=params.p)


def _parse_suite(value: str) -> EscrowSuite:
    try:
        return EscrowSuite(value)
    except ValueError:
        raise DoctorKeyFileError(f"unknown escrow suite {value!r}") from None


# --- packages ----------------------------------------------------------------------


def seal_escrow(public_key: DoctorPublicKey, patient_key: PatientKey, ctx: EscrowContext) -> bytes:
    """Seal a patient key to a doctor public key, bound to ``ctx`` and the key id."""
    if not isinstance(public_key, DoctorPublicKey):
        raise TypeError("public_key must be a DoctorPublicKey")
    if not isinstance(patient_key, PatientKey):
        raise TypeError("patient_key must be a PatientKey")
    if not isinstance(ctx, EscrowContext):
        raise TypeError("ctx must be an EscrowContext")
    spec = _SPECS[public_key.suite]
    header = fmt.encode_header(
        spec.suite_id,
        bytes.fromhex(public_key.key_id),
        ctx.tenant,
        ctx.patient_id,
        ctx.key_version,
    )
    # Package-internal read of the key bytes, as in export.py.
    sealed = _primitives.hpke_seal(public_key._hpke_key, patient_key._raw, info=fmt.hpke_info(header))
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


def open_escrow(private_key: DoctorPrivateKey, package: bytes, ctx: EscrowContext | None = None) -> PatientKey:
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
        raise DecryptionError
    if len(parsed.sealed) != _SPECS[suite].kem.enc_size + fmt.PATIENT_KEY_SIZE + fmt.AEAD_TAG_SIZE:
        raise DecryptionError
    raw = _primitives.hpke_open(private_key._hpke_private(), parsed.sealed, info=fmt.hpke_info(parsed.header))
    if len(raw) != fmt.PATIENT_KEY_SIZE:  # pragma: no cover - sealed length checked
        raise DecryptionError
    return _patient_key_from_raw(raw)


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
        raise DecryptionError from None
    if parsed.suite_id not in _SUITE_BY_ID:
        raise DecryptionError
    return parsed
