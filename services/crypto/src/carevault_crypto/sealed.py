"""Sealed secrets: small service secrets kept encrypted at rest under a key that
lives in a file (a Kubernetes Secret), not in the database.

For what a service must be able to read back itself, such as api's TOTP shared
secrets and the private keys it signs tokens with: a copy of the database alone
then yields nothing usable.

* :class:`SealingKey` - 32 random bytes, opaque (prints ``***``, refuses pickling),
  read from a file holding its base64url form (``SealingKey.generate_file``
  writes one, mode 0600).
* :class:`SecretSealer` - seals with the current key and opens with the current
  or a previous one (key rotation: list the old key as previous, reseal, drop it).

A sealed value is text: ``cvs1.<key id>.<base64url(blob)>``, where the blob is
the package's key-committing AES-256-GCM (nonce | ciphertext | tag | commitment),
under a key derived from the sealing key, with associated data binding the
purpose (e.g. ``api/totp-secret``) and a context (e.g. the user id): a value
moved to another row or another purpose does not open. Every failure is the one
:class:`DecryptionError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from carevault_crypto import _primitives
from carevault_crypto._encoding import b64url_decode, b64url_encode, encode_parts
from carevault_crypto._opaque import Opaque
from carevault_crypto.errors import DecryptionError, InvalidKeyFormat

__all__ = ["SealingKey", "SecretSealer", "is_sealed"]

PREFIX: Final = "cvs1"
_INFO: Final = b"carevault/sealed-secret/v1"
_KEY_ID_INFO: Final = b"carevault/sealed-secret/key-id/v1"
_AD_LABEL: Final = b"carevault/sealed-secret/ad/v1"
_TOKEN: Final = object()


class SealingKey(Opaque):
    __slots__ = ("_aead", "_key_id")

    def __init__(self, raw: bytes, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use SealingKey.generate() or SealingKey.from_file()")
        if len(raw) != _primitives.KEY_SIZE:
            raise InvalidKeyFormat("a sealing key is 32 bytes")
        self._aead = _primitives.CommittingAead.from_random_key(raw, info=_INFO)
        self._key_id = b64url_encode(_primitives.hkdf_expand(raw, info=_KEY_ID_INFO, length=6))

    @classmethod
    def generate(cls) -> SealingKey:
        return cls(_primitives.random_bytes(_primitives.KEY_SIZE), _token=_TOKEN)

    @classmethod
    def from_text(cls, text: str) -> SealingKey:
        raw = b64url_decode(text.strip(), _primitives.KEY_SIZE)
        if raw is None:
            raise InvalidKeyFormat("a sealing key file holds 32 bytes in base64url")
        return cls(raw, _token=_TOKEN)

    @classmethod
    def from_file(cls, path: Path) -> SealingKey:
        return cls.from_text(path.read_text(encoding="ascii"))

    @staticmethod
    def generate_file(path: Path) -> None:
        """Write a new random key to ``path`` (mode 0600); refuses to overwrite one."""
        raw = _primitives.random_bytes(_primitives.KEY_SIZE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(b64url_encode(raw) + "\n")

    @property
    def key_id(self) -> str:
        """Names the key in sealed values (derived, reveals nothing of the key)."""
        return self._key_id


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX + ".")


def _ad(purpose: str, context: str) -> bytes:
    return encode_parts(_AD_LABEL, purpose.encode(), context.encode())


class SecretSealer:
    def __init__(self, current: SealingKey, previous: Sequence[SealingKey] = ()) -> None:
        self.current = current
        self._keys = {key.key_id: key for key in (*previous, current)}

    def seal(self, secret: bytes, *, purpose: str, context: str) -> str:
        blob = self.current._aead.seal(secret, _ad(purpose, context))
        return f"{PREFIX}.{self.current.key_id}.{b64url_encode(blob)}"

    def open(self, sealed: str, *, purpose: str, context: str) -> bytes:
        parts = sealed.split(".")
        if len(parts) != 3 or parts[0] != PREFIX or parts[1] not in self._keys:
            raise DecryptionError
        # The blob's length is the secret's plus a fixed overhead: decode strictly at that length.
        length = len(parts[2]) * 3 // 4
        blob = b64url_decode(parts[2], length)
        if blob is None:
            raise DecryptionError
        return self._keys[parts[1]]._aead.open(blob, _ad(purpose, context))

    def needs_resealing(self, sealed: str) -> bool:
        """Not sealed, or sealed under a previous key."""
        return not is_sealed(sealed) or sealed.split(".")[1] != self.current.key_id
