"""Private: the record blob format (used by :class:`.keyring.PatientKeyring`).

Record blob v1 (overhead 125 bytes)::

    offset  size  field
    0       1     version 0x01
    1       4     key id of the patient master key
    5       60    wrapped DEK = nonce(12) | AES-256-GCM(record KEK, DEK)(32) | tag(16)
    65      12    body nonce
    77      n     body ciphertext (n = plaintext length)
    77+n    16    body GCM tag
    93+n    32    body key commitment

    DEK            = 32 fresh random bytes per call (per record version)
    record KEK     = HKDF-Expand(master, parts("carevault/record-kek/v1", patient ctx))
    wrap AD        = parts("carevault/record-dek/v1", header, rc.encode())
    enc | commit   = HKDF-Expand(DEK, "carevault/record-body/v1", 64)
    body AD        = parts("carevault/record-body/v1", header, wrapped DEK, rc.encode())
    commitment     = HMAC-SHA-256(commit, parts(label, body nonce, body AD))

``header`` is ``version | key id``. The commitment is checked (constant time)
before the body is decrypted, and it commits to the DEK: a blob decrypts to at
most one plaintext whatever master key is tried.
"""

from __future__ import annotations

from typing import Final

from carevault_crypto import _primitives
from carevault_crypto._encoding import encode_parts
from carevault_crypto.context import RecordContext
from carevault_crypto.errors import DecryptionError

VERSION: Final = b"\x01"
KEY_ID_SIZE: Final = 4
HEADER_SIZE: Final = 1 + KEY_ID_SIZE
WRAPPED_DEK_SIZE: Final = _primitives.Aead.OVERHEAD + _primitives.KEY_SIZE
OVERHEAD: Final = HEADER_SIZE + WRAPPED_DEK_SIZE + _primitives.CommittingAead.OVERHEAD

_DEK_LABEL: Final = b"carevault/record-dek/v1"
_BODY_LABEL: Final = b"carevault/record-body/v1"


def seal(record_kek: _primitives.Aead, key_id: bytes, plaintext: bytes, rc: RecordContext) -> bytes:
    header = VERSION + key_id
    rc_bytes = rc.encode()
    dek = _primitives.random_bytes(_primitives.KEY_SIZE)
    wrapped = record_kek.seal(dek, encode_parts(_DEK_LABEL, header, rc_bytes))
    body = _primitives.CommittingAead.from_random_key(dek, info=_BODY_LABEL)
    sealed = body.seal(plaintext, encode_parts(_BODY_LABEL, header, wrapped, rc_bytes))
    return header + wrapped + sealed


def open_(record_kek: _primitives.Aead, key_id: bytes, blob: bytes, rc: RecordContext) -> bytes:
    blob = bytes(blob)
    if len(blob) < OVERHEAD or blob[:1] != VERSION:
        raise DecryptionError
    header = blob[:HEADER_SIZE]
    if not _primitives.constant_time_equal(header[1:], key_id):
        raise DecryptionError
    rc_bytes = rc.encode()
    wrapped = blob[HEADER_SIZE : HEADER_SIZE + WRAPPED_DEK_SIZE]
    dek = record_kek.open(wrapped, encode_parts(_DEK_LABEL, header, rc_bytes))
    body = _primitives.CommittingAead.from_random_key(dek, info=_BODY_LABEL)
    return body.open(blob[HEADER_SIZE + WRAPPED_DEK_SIZE :], encode_parts(_BODY_LABEL, header, wrapped, rc_bytes))
