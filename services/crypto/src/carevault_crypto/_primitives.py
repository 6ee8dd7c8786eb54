"""Private: the only module that touches raw primitives (AES-GCM, HKDF, HMAC, CSPRNG).

Everything else in the package composes the small, hard-to-misuse building blocks
below. Nonces are generated *here* and nowhere else:

* :class:`Aead` - AES-256-GCM with a fresh random 96-bit nonce per call.
  Output ``nonce(12) | ciphertext | tag(16)``.
* :class:`CommittingAead` - AES-256-GCM plus a key commitment: an encryption key
  and a separate commitment key are derived together (HKDF-SHA-256); the blob
  carries ``HMAC-SHA-256(commit_key, parts(label, nonce, ad))`` which is checked in
  constant time *before* any decryption. A blob therefore opens under at most one
  key (AES-GCM alone is not key-committing). Output
  ``nonce(12) | ciphertext | tag(16) | commitment(32)``.
* :class:`SegmentCipher` - AES-256-GCM for streaming segments with the nonce
  ``prefix(7) | segment index (4, big-endian) | last-segment flag (1)``.

For the audit checkpoints (used by :mod:`.checkpoint` only):

* :func:`ed25519_generate`, :func:`ed25519_public`, :func:`ed25519_sign`,
  :func:`ed25519_verify` - Ed25519 (RFC 8032) on raw 32-byte seeds and public keys.

For escrow to the hosting doctor (used by :mod:`.escrow` only):

* :class:`HpkeKem` and the opaque handles :class:`HpkePublicKey` /
  :class:`HpkePrivateKey` - HPKE (RFC 9180) base mode, single-shot, with HKDF-SHA256
  and AES-256-GCM; :func:`hpke_seal` / :func:`hpke_open`.
* :func:`scrypt`, :func:`sha256`, and :func:`aesgcm_seal_nonce_in_ad` /
  :func:`aesgcm_open_with_nonce` for the passphrase-encrypted doctor key file, whose
  nonce is a separate field covered by the associated data.

Randomness goes through the module-level ``_random_bytes`` so that the test-vector
generator can make it deterministic. That hook is private; there is no public
nonce or randomness parameter anywhere. (HPKE encapsulation and HPKE key
generation draw their randomness inside pyca/cryptography.)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from carevault_crypto._encoding import encode_parts
from carevault_crypto._opaque import Opaque
from carevault_crypto.errors import DecryptionError

BytesLike = bytes | bytearray | memoryview

KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
COMMITMENT_SIZE: Final = 32
STREAM_NONCE_PREFIX_SIZE: Final = 7
MAX_SEGMENTS: Final = 2**32

_COMMIT_LABEL: Final = b"carevault/commitment/v1"

# Test hook (patched only by tests/make_vectors.py). Never add a public equivalent.
_random_bytes: Callable[[int], bytes] = os.urandom


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the OS CSPRNG."""
    return _random_bytes(n)


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA-256 (RFC 5869), extract and expand."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_expand(prk: bytes, *, info: bytes, length: int = KEY_SIZE) -> bytes:
    """HKDF-Expand only; ``prk`` must already be a uniformly random key."""
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA-256."""
    return hmac.digest(key, message, "sha256")


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (``hmac.compare_digest``)."""
    return hmac.compare_digest(a, b)


class Aead(Opaque):
    """AES-256-GCM with an internally generated random nonce."""

    __slots__ = ("_gcm",)

    OVERHEAD: Final = NONCE_SIZE + TAG_SIZE

    def __init__(self, key: bytes) -> None:
        self._gcm = AESGCM(key)

    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        nonce = random_bytes(NONCE_SIZE)
        return nonce + self._gcm.encrypt(nonce, plaintext, ad)

    def open(self, sealed: bytes, ad: bytes) -> bytes:
        if len(sealed) < self.OVERHEAD:
            raise DecryptionError
        try:
            return self._gcm.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], ad)
        except InvalidTag:
            raise DecryptionError from None


class CommittingAead(Opaque):
    """AES-256-GCM with an HMAC-SHA-256 key commitment checked before decrypting."""

    __slots__ = ("_commit_key", "_gcm")

    OVERHEAD: Final = NONCE_SIZE + TAG_SIZE + COMMITMENT_SIZE

    def __init__(self, key_material: bytes) -> None:
        """``key_material`` is 64 derived bytes: encryption key | commitment key."""
        if len(key_material) != 2 * KEY_SIZE:
            raise ValueError("committing AEAD needs 64 bytes of derived key material")
        self._gcm = AESGCM(key_material[:KEY_SIZE])
        self._commit_key = key_material[KEY_SIZE:]

    @classmethod
    def derive(cls, ikm: bytes, *, salt: bytes | None, info: bytes) -> CommittingAead:
        """Derive both keys from ``ikm`` with HKDF-SHA-256."""
        return cls(hkdf(ikm, salt=salt, info=info, length=2 * KEY_SIZE))

    @classmethod
    def from_random_key(cls, key: bytes, *, info: bytes) -> CommittingAead:
        """Derive both keys from a uniformly random key with HKDF-Expand (one step)."""
        return cls(hkdf_expand(key, info=info, length=2 * KEY_SIZE))

    def _commitment(self, nonce: bytes, ad: bytes) -> bytes:
        return hmac_sha256(self._commit_key, encode_parts(_COMMIT_LABEL, nonce, ad))

    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        nonce = random_bytes(NONCE_SIZE)
        body = self._gcm.encrypt(nonce, plaintext, ad)
        return nonce + body + self._commitment(nonce, ad)

    def open(self, sealed: bytes, ad: bytes) -> bytes:
        if len(sealed) < self.OVERHEAD:
            raise DecryptionError
        nonce = sealed[:NONCE_SIZE]
        body = sealed[NONCE_SIZE:-COMMITMENT_SIZE]
        if not constant_time_equal(sealed[-COMMITMENT_SIZE:], self._commitment(nonce, ad)):
            raise DecryptionError
        try:
            return self._gcm.decrypt(nonce, body, ad)
        except InvalidTag:
            raise DecryptionError from None


class SegmentCipher(Opaque):
    """AES-256-GCM for one stream: nonce = prefix(7) | index(4, BE) | last flag(1)."""

    __slots__ = ("_gcm", "_prefix")

    def __init__(self, key: bytes, nonce_prefix: bytes) -> None:
        if len(nonce_prefix) != STREAM_NONCE_PREFIX_SIZE:
            raise ValueError("bad nonce prefix size")
        self._gcm = AESGCM(key)
        self._prefix = nonce_prefix

    def _nonce(self, index: int, last: bool) -> bytes:
        if not 0 <= index < MAX_SEGMENTS:
            raise ValueError("segment index out of range")
        return self._prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")

    def seal(self, index: int, last: bool, plaintext: BytesLike) -> bytes:
        return self._gcm.encrypt(self._nonce(index, last), plaintext, None)

    def open(self, index: int, last: bool, segment: BytesLike) -> bytes:
        if len(segment) < TAG_SIZE:
            raise DecryptionError
        try:
            return self._gcm.decrypt(self._nonce(index, last), segment, None)
        except InvalidTag:
            raise DecryptionError from None


# --- audit checkpoints: Ed25519 ------------------------------------------------------

ED25519_SEED_SIZE: Final = 32
ED25519_PUBLIC_SIZE: Final = 32
ED25519_SIGNATURE_SIZE: Final = 64


def ed25519_generate() -> bytes:
    """A fresh Ed25519 private key as its 32-byte seed (a secret)."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes_raw()


def ed25519_public(seed: bytes) -> bytes:
    """The 32-byte public key of a seed; :class:`ValueError` if the seed is malformed."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature (deterministic, RFC 8032)."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """True iff ``signature`` is valid for ``message`` under ``public``; never raises."""
    if len(public) != ED25519_PUBLIC_SIZE or len(signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- escrow: HPKE, scrypt, SHA-256, AES-GCM with the nonce in the associated data ----

_MLKEM768_PUBLIC_SIZE: Final = 1184
_MLKEM768_SEED_SIZE: Final = 64
_X25519_SIZE: Final = 32


class HpkeKem(enum.Enum):
    """The KEM of an escrow HPKE suite; the KDF is HKDF-SHA256, the AEAD AES-256-GCM.

    Raw key bytes: ``X25519`` public and private keys are 32 bytes. For
    ``MLKEM768_X25519`` the public key is ``ML-KEM-768 public key (1184) | X25519
    public key (32)`` and the private key ``ML-KEM-768 seed (64) | X25519 scalar (32)``.
    """

    MLKEM768_X25519 = "MLKEM768_X25519"
    X25519 = "X25519"

    @property
    def public_size(self) -> int:
        if self is HpkeKem.X25519:
            return _X25519_SIZE
        return _MLKEM768_PUBLIC_SIZE + _X25519_SIZE

    @property
    def private_size(self) -> int:
        if self is HpkeKem.X25519:
            return _X25519_SIZE
        return _MLKEM768_SEED_SIZE + _X25519_SIZE

    @property
    def enc_size(self) -> int:
        """Size of the KEM encapsulation at the start of a single-shot ciphertext."""
        return _hpke_kem(self).enc_length()


def _hpke_kem(kem: HpkeKem) -> hpke.KEM:
    return hpke.KEM.X25519 if kem is HpkeKem.X25519 else hpke.KEM.MLKEM768_X25519


def _hpke_suite(kem: HpkeKem) -> hpke.Suite:
    return hpke.Suite(_hpke_kem(kem), hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


class HpkePublicKey:
    """Opaque handle on a validated HPKE public key (made by :func:`hpke_public_key`)."""

    __slots__ = ("_key", "_suite")

    def __init__(self, kem: HpkeKem, key: hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey) -> None:
        self._suite = _hpke_suite(kem)
        self._key = key


class HpkePrivateKey(Opaque):
    """Opaque handle on an HPKE private key: prints ``***``, refuses to pickle."""

    __slots__ = ("_key", "_mlkem", "_public", "_suite", "_x25519")

    def __init__(self, kem: HpkeKem, mlkem_key: mlkem.MLKEM768PrivateKey | None, x25519_key: x25519.X25519PrivateKey) -> None:
        if (mlkem_key is None) != (kem is HpkeKem.X25519):
            raise ValueError("the private key parts do not match the KEM")
        self._suite = _hpke_suite(kem)
        self._mlkem = mlkem_key
        self._x25519 = x25519_key
        self._key: hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey
        if mlkem_key is None:
            self._key = x25519_key
            self._public = x25519_key.public_key().public_bytes_raw()
        else:
            self._key = hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)
            self._public = mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()


def hpke_generate(kem: HpkeKem) -> HpkePrivateKey:
    """A fresh HPKE key pair (the library's key generation and CSPRNG)."""
    x25519_key = x25519.X25519PrivateKey.generate()
    if kem is HpkeKem.X25519:
        return HpkePrivateKey(kem, None, x25519_key)
    return HpkePrivateKey(kem, mlkem.MLKEM768PrivateKey.generate(), x25519_key)


def hpke_private_key(kem: HpkeKem, raw: bytes) -> HpkePrivateKey:
    """Rebuild a private key from its raw bytes (layout in :class:`HpkeKem`).

    Raises :class:`ValueError` if ``raw`` has the wrong size.
    """
    if len(raw) != kem.private_size:
        raise ValueError("private key has the wrong size")
    if kem is HpkeKem.X25519:
        return HpkePrivateKey(kem, None, x25519.X25519PrivateKey.from_private_bytes(raw))
    return HpkePrivateKey(
        kem,
        mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM768_SEED_SIZE]),
        x25519.X25519PrivateKey.from_private_bytes(raw[_MLKEM768_SEED_SIZE:]),
    )


def hpke_private_bytes(key: HpkePrivateKey) -> bytes:
    """The raw bytes of a private key (layout in :class:`HpkeKem`); a secret."""
    seed = b"" if key._mlkem is None else key._mlkem.private_bytes_raw()
    return seed + key._x25519.private_bytes_raw()


def hpke_public_bytes(key: HpkePrivateKey) -> bytes:
    """The raw bytes of the public key belonging to ``key``."""
    return key._public


def hpke_public_key(kem: HpkeKem, raw: bytes) -> HpkePublicKey:
    """Parse and validate raw public key bytes; :class:`ValueError` if invalid."""
    if len(raw) != kem.public_size:
        raise ValueError("public key has the wrong size")
    if kem is HpkeKem.X25519:
        return HpkePublicKey(kem, x25519.X25519PublicKey.from_public_bytes(raw))
    return HpkePublicKey(
        kem,
        hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM768_PUBLIC_SIZE]),
            x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM768_PUBLIC_SIZE:]),
        ),
    )


def hpke_seal(public_key: HpkePublicKey, plaintext: bytes, *, info: bytes) -> bytes:
    """HPKE base-mode single-shot seal: ``enc | AES-256-GCM(plaintext) | tag``."""
    return public_key._suite.encrypt(plaintext, public_key._key, info=info)


def hpke_open(private_key: HpkePrivateKey, sealed: bytes, *, info: bytes) -> bytes:
    """HPKE base-mode single-shot open; :class:`DecryptionError` on any failure."""
    try:
        return private_key._suite.decrypt(sealed, private_key._key, info=info)
    except (InvalidTag, ValueError):
        raise DecryptionError from None


def scrypt(secret: bytes, *, salt: bytes, log2_n: int, r: int, p: int, length: int = KEY_SIZE) -> bytes:
    """scrypt (RFC 7914) with N = 2**log2_n; the caller bounds the parameters."""
    return Scrypt(salt=salt, length=length, n=2**log2_n, r=r, p=p).derive(secret)


def sha256(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()


def aesgcm_seal_nonce_in_ad(key: bytes, plaintext: bytes, ad_for_nonce: Callable[[bytes], bytes]) -> tuple[bytes, bytes]:
    """AES-256-GCM under a fresh random nonce that the associated data covers.

    For a format that stores the nonce in a field of its own and authenticates it
    with the other fields: ``ad_for_nonce(nonce)`` gives the associated data. Returns
    ``(nonce, ciphertext | tag)``.
    """
    nonce = random_bytes(NONCE_SIZE)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, ad_for_nonce(nonce))


def aesgcm_open_with_nonce(key: bytes, nonce: bytes, sealed: bytes, ad: bytes) -> bytes:
    """Open what :func:`aesgcm_seal_nonce_in_ad` made; :class:`DecryptionError` if not authentic."""
    if len(nonce) != NONCE_SIZE or len(sealed) < TAG_SIZE:
        raise DecryptionError
    try:
        return AESGCM(key).decrypt(nonce, sealed, ad)
    except InvalidTag:
        raise DecryptionError from None
