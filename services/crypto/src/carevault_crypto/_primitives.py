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

Randomness goes through the module-level ``_random_bytes`` so that the test-vector
generator can make it deterministic. That hook is private; there is no public
nonce or randomness parameter anywhere.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from carevault_crypto._encoding import encode_parts
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


class Aead:
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

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("key objects cannot be pickled")


class CommittingAead:
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

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("key objects cannot be pickled")


class SegmentCipher:
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

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("key objects cannot be pickled")
