"""Opaque key objects: :class:`PatientKey` and :class:`FileKey`.

Both hold 32 secret random bytes and are deliberately hard to leak:

* they print as ``***`` (``repr``, ``str``, f-strings, logging);
* they refuse to be pickled or copied, so they cannot end up in a cache, a task
  queue or a session store by accident (``_opaque.Opaque``, the base of every
  object here that holds a key);
* they have no public attribute, method or constructor that yields or takes raw
  bytes. Clear key material crosses the boundary only through
  :mod:`carevault_crypto.export` (and the two parsing classmethods below).

Key hierarchy (see the package README for the whole picture)::

    PatientKey (client-held, 32 random bytes, header X-Patient-Key)
      |-- HKDF(salt, info=ctx) --> verifier sub-key  (key check, verifier.py)
      `-- HKDF(salt, info=ctx) --> KEK wrapping the random per-patient master key
                                   (PatientKeyring, keyring.py)
    FileKey (random per file, wrapped by the keyring, sent to fileservice over mTLS)
      `-- HKDF(salt, info=header|associated) --> per-file segment key (streaming.py)
"""

from __future__ import annotations

from typing import Final

from carevault_crypto import _primitives
from carevault_crypto._encoding import b64url_decode
from carevault_crypto._opaque import Opaque
from carevault_crypto.errors import InvalidKeyFormat

__all__ = ["FileKey", "PatientKey"]

_TOKEN: Final = object()
_FILE_KEY_TRANSPORT_VERSION: Final = b"\x01"


class _SecretKey(Opaque):
    """Base of opaque 32-byte keys. Package-internal code reads ``_raw``."""

    __slots__ = ("_raw",)

    _raw: bytes

    def __init__(self, raw: bytes, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError(f"use {type(self).__name__}.generate() or a parsing classmethod")
        if len(raw) != _primitives.KEY_SIZE:
            raise InvalidKeyFormat("key must be 32 bytes")
        self._raw = bytes(raw)

    def __eq__(self, other: object) -> bool:
        """Constant-time comparison with a key of the same kind."""
        if not isinstance(other, _SecretKey) or type(other) is not type(self):
            return NotImplemented
        return _primitives.constant_time_equal(self._raw, other._raw)

    __hash__ = None  # type: ignore[assignment]  # keys are not dict keys / set members


class PatientKey(_SecretKey):
    """The client-held patient key: 32 random bytes, never stored by the platform."""

    __slots__ = ()

    @classmethod
    def generate(cls) -> PatientKey:
        """A new random patient key (client tools, tests)."""
        return cls(_primitives.random_bytes(_primitives.KEY_SIZE), _token=_TOKEN)

    @classmethod
    def from_header(cls, value: str) -> PatientKey:
        """Parse the ``X-Patient-Key`` header: base64url, no padding, exactly 32 bytes.

        Raises :class:`InvalidKeyFormat`; the message never contains ``value``.
        """
        raw = b64url_decode(value, _primitives.KEY_SIZE)
        if raw is None:
            raise InvalidKeyFormat("patient key must be 32 bytes, base64url without padding")
        return cls(raw, _token=_TOKEN)


class FileKey(_SecretKey):
    """A random per-file key for streaming encryption (see :mod:`.streaming`)."""

    __slots__ = ()

    @classmethod
    def generate(cls) -> FileKey:
        """A new random file key."""
        return cls(_primitives.random_bytes(_primitives.KEY_SIZE), _token=_TOKEN)

    @classmethod
    def from_transport(cls, value: str) -> FileKey:
        """Parse the transport form made by :func:`.export.file_key_to_transport`.

        Format: base64url without padding of ``0x01 | key(32)`` (44 characters).
        Raises :class:`InvalidKeyFormat`; the message never contains ``value``.
        """
        raw = b64url_decode(value, 1 + _primitives.KEY_SIZE)
        if raw is None or raw[:1] != _FILE_KEY_TRANSPORT_VERSION:
            raise InvalidKeyFormat("file key must be a version-1 transport string")
        return cls(raw[1:], _token=_TOKEN)


def _patient_key_from_raw(raw: bytes) -> PatientKey:
    """Package-internal: a :class:`PatientKey` from unwrapped bytes (e.g. escrow)."""
    return PatientKey(raw, _token=_TOKEN)


def _file_key_from_raw(raw: bytes) -> FileKey:
    """Package-internal: a :class:`FileKey` from unwrapped bytes."""
    return FileKey(raw, _token=_TOKEN)


def _file_key_transport_bytes(key: FileKey) -> bytes:
    """Package-internal: the versioned transport bytes (encoded by export.py)."""
    return _FILE_KEY_TRANSPORT_VERSION + key._raw
