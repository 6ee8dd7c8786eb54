"""The per-patient keyring: a random master key wrapped under the client's key.

Key hierarchy::

    PatientKey (client-held)
      `-- KEK = HKDF-SHA-256(patient key, salt=random 16 B,
                             info=parts("carevault/keyring-kek/v1", ctx))  (64 B: enc|commit)
            `-- wraps the master key (32 random bytes, one per patient)  -> "wrapped keyring"
    master key (inside PatientKeyring, derived sub-keys cached at open time)
      |-- key id      = HKDF-Expand(master, "carevault/key-id/v1")[:4]
      |-- record KEK  = HKDF-Expand(master, parts("carevault/record-kek/v1", ctx))
      |     `-- wraps a fresh random DEK per record version (see _record_blob.py)
      |-- blind index = HKDF-Expand(master, parts("carevault/blind-index/v1", ctx))
      `-- file wrap   = HKDF-Expand(master, parts("carevault/file-key-wrap/v1", ctx)) (enc|commit)
            `-- wraps FileKeys (streaming.py)

Rotating the client key only rewraps the master key (:meth:`PatientKeyring.rewrap`):
record bodies, wrapped DEKs, wrapped file keys and blind indexes stay valid.
Deleting the wrapped keyring (and its escrow copy) crypto-shreds the patient.

Wrapped keyring v1 (113 bytes)::

    0x01 | key id (4) | salt (16) | nonce (12) | enc master (32) | tag (16) | commitment (32)

    AD = parts("carevault/keyring/v1", 0x01 | key id | salt, ctx.encode())

Wrapped file key v1 (97 bytes)::

    0x01 | key id (4) | nonce (12) | enc file key (32) | tag (16) | commitment (32)

    AD = parts("carevault/file-key/v1", 0x01 | key id, ctx.encode(), associated)

Commitments are ``HMAC-SHA-256(commit key, parts(label, nonce, AD))``, checked in
constant time before decryption (see :mod:`._primitives`).

Blind index v1: ``base64url(0x01 | HMAC-SHA-256(bi key, parts(param, value))[:16])``
(23 characters, deterministic, per patient).
"""

from __future__ import annotations

from typing import Final

from carevault_crypto import _primitives, _record_blob
from carevault_crypto._encoding import b64url_encode, encode_parts
from carevault_crypto._opaque import Opaque
from carevault_crypto.context import PatientContext, RecordContext
from carevault_crypto.errors import DecryptionError
from carevault_crypto.keys import FileKey, PatientKey, _file_key_from_raw

__all__ = ["PatientKeyring"]

_TOKEN: Final = object()
_VERSION: Final = b"\x01"
_KEY_ID_SIZE: Final = _record_blob.KEY_ID_SIZE
_SALT_SIZE: Final = 16
_KEYRING_HEADER_SIZE: Final = 1 + _KEY_ID_SIZE + _SALT_SIZE
WRAPPED_KEYRING_SIZE: Final = _KEYRING_HEADER_SIZE + _primitives.KEY_SIZE + _primitives.CommittingAead.OVERHEAD
_FILE_HEADER_SIZE: Final = 1 + _KEY_ID_SIZE
WRAPPED_FILE_KEY_SIZE: Final = _FILE_HEADER_SIZE + _primitives.KEY_SIZE + _primitives.CommittingAead.OVERHEAD
_BLIND_INDEX_SIZE: Final = 16

_KEK_LABEL: Final = b"carevault/keyring-kek/v1"
_KEYRING_LABEL: Final = b"carevault/keyring/v1"
_KEY_ID_LABEL: Final = b"carevault/key-id/v1"
_RECORD_KEK_LABEL: Final = b"carevault/record-kek/v1"
_BLIND_INDEX_LABEL: Final = b"carevault/blind-index/v1"
_FILE_WRAP_LABEL: Final = b"carevault/file-key-wrap/v1"
_FILE_KEY_LABEL: Final = b"carevault/file-key/v1"


def _kek(patient_key: PatientKey, salt: bytes, ctx_bytes: bytes) -> _primitives.CommittingAead:
    return _primitives.CommittingAead.derive(patient_key._raw, salt=salt, info=encode_parts(_KEK_LABEL, ctx_bytes))


class PatientKeyring(Opaque):
    """An opened per-patient keyring. Opaque: prints as ``***``, refuses pickling."""

    __slots__ = (
        "_blind_key",
        "_ctx",
        "_ctx_bytes",
        "_file_wrap",
        "_key_id",
        "_master",
        "_record_kek",
    )

    def __init__(self, master: bytes, ctx: PatientContext, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use PatientKeyring.create() or PatientKeyring.open()")
        ctx_bytes = ctx.encode()
        self._master = master
        self._ctx = ctx
        self._ctx_bytes = ctx_bytes
        expand = _primitives.hkdf_expand
        self._key_id = expand(master, info=_KEY_ID_LABEL, length=_KEY_ID_SIZE)
        self._record_kek = _primitives.Aead(expand(master, info=encode_parts(_RECORD_KEK_LABEL, ctx_bytes)))
        self._blind_key = expand(master, info=encode_parts(_BLIND_INDEX_LABEL, ctx_bytes))
        self._file_wrap = _primitives.CommittingAead.from_random_key(master, info=encode_parts(_FILE_WRAP_LABEL, ctx_bytes))

    # -- creation, opening, rotation ------------------------------------------------

    @classmethod
    def create(cls, patient_key: PatientKey, ctx: PatientContext) -> tuple[PatientKeyring, bytes]:
        """A new random master key for ``ctx``; returns the keyring and its wrapped form."""
        keyring = cls(_primitives.random_bytes(_primitives.KEY_SIZE), ctx, _token=_TOKEN)
        return keyring, keyring.rewrap(patient_key)

    @classmethod
    def open(cls, patient_key: PatientKey, ctx: PatientContext, wrapped: bytes) -> PatientKeyring:
        """Unwrap a keyring; raises :class:`DecryptionError` on any failure."""
        wrapped = bytes(wrapped)
        if len(wrapped) != WRAPPED_KEYRING_SIZE or wrapped[:1] != _VERSION:
            raise DecryptionError
        header = wrapped[:_KEYRING_HEADER_SIZE]
        ctx_bytes = ctx.encode()
        kek = _kek(patient_key, header[1 + _KEY_ID_SIZE :], ctx_bytes)
        ad = encode_parts(_KEYRING_LABEL, header, ctx_bytes)
        keyring = cls(kek.open(wrapped[_KEYRING_HEADER_SIZE:], ad), ctx, _token=_TOKEN)
        if not _primitives.constant_time_equal(keyring._key_id, header[1 : 1 + _KEY_ID_SIZE]):
            raise DecryptionError
        return keyring

    def rewrap(self, new_patient_key: PatientKey) -> bytes:
        """Wrap this keyring's master key under ``new_patient_key`` (key rotation).

        Nothing else changes: records, file keys and blind indexes stay valid. Store
        a new verifier for the new key as well.
        """
        header = _VERSION + self._key_id + _primitives.random_bytes(_SALT_SIZE)
        kek = _kek(new_patient_key, header[1 + _KEY_ID_SIZE :], self._ctx_bytes)
        return header + kek.seal(self._master, encode_parts(_KEYRING_LABEL, header, self._ctx_bytes))

    @property
    def context(self) -> PatientContext:
        """The patient this keyring belongs to."""
        return self._ctx

    @property
    def key_id(self) -> str:
        """Public identifier of the master key (8 hex characters, stable across rewraps)."""
        return self._key_id.hex()

    # -- records ----------------------------------------------------------------------

    def seal_record(self, plaintext: bytes, rc: RecordContext) -> bytes:
        """Encrypt one record version under a fresh random DEK, bound to ``rc``."""
        if rc.tenant != self._ctx.tenant or rc.patient_id != self._ctx.patient_id:
            raise ValueError("record context belongs to another patient than this keyring")
        return _record_blob.seal(self._record_kek, self._key_id, plaintext, rc)

    def open_record(self, blob: bytes, rc: RecordContext) -> bytes:
        """Decrypt a record blob; raises :class:`DecryptionError` on any failure."""
        if rc.tenant != self._ctx.tenant or rc.patient_id != self._ctx.patient_id:
            raise DecryptionError
        return _record_blob.open_(self._record_kek, self._key_id, blob, rc)

    # -- blind index ------------------------------------------------------------------

    def blind_index(self, param: str, normalised_value: str) -> str:
        """Deterministic search token for an exact-match lookup of ``normalised_value``.

        The caller normalises (case, whitespace, date format) before calling. The
        token is 23 base64url characters and survives client-key rotation.
        """
        message = encode_parts(param.encode("utf-8"), normalised_value.encode("utf-8"))
        tag = _primitives.hmac_sha256(self._blind_key, message)[:_BLIND_INDEX_SIZE]
        return b64url_encode(_VERSION + tag)

    # -- file keys --------------------------------------------------------------------

    def _file_ad(self, associated: bytes) -> bytes:
        header = _VERSION + self._key_id
        return encode_parts(_FILE_KEY_LABEL, header, self._ctx_bytes, bytes(associated))

    def wrap_file_key(self, file_key: FileKey, associated: bytes) -> bytes:
        """Wrap ``file_key``, bound to ``associated`` (e.g. the file's binary id)."""
        sealed = self._file_wrap.seal(file_key._raw, self._file_ad(associated))
        return _VERSION + self._key_id + sealed

    def unwrap_file_key(self, blob: bytes, associated: bytes) -> FileKey:
        """Unwrap a file key; raises :class:`DecryptionError` on any failure."""
        blob = bytes(blob)
        if len(blob) != WRAPPED_FILE_KEY_SIZE or blob[:1] != _VERSION:
            raise DecryptionError
        if not _primitives.constant_time_equal(blob[1:_FILE_HEADER_SIZE], self._key_id):
            raise DecryptionError
        raw = self._file_wrap.open(blob[_FILE_HEADER_SIZE:], self._file_ad(associated))
        return _file_key_from_raw(raw)
