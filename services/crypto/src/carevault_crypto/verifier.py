"""Key verifier: lets ``records`` refuse a wrong or corrupted patient key early.

The platform stores, per patient, a verifier blob created from the patient key.
On each request it recomputes the tag from the presented key and compares in
constant time, before touching any ciphertext.

Format v1 (49 bytes)::

    0x01 | salt (16 random bytes) | tag (32)

    sub_key = HKDF-SHA-256(ikm=patient_key, salt=salt,
                           info=parts("carevault/verifier/v1", ctx.encode()))
    tag     = HMAC-SHA-256(sub_key, parts("carevault/verifier/v1", 0x01 | salt, ctx.encode()))

where ``parts`` is the length-prefixed encoding of :mod:`._encoding`. The verifier
reveals nothing usable about the key (a PRF output under a 256-bit key) and is
bound to the patient context, so it cannot be copied to another patient. After a
key rotation, store a new verifier for the new key.
"""

from __future__ import annotations

from typing import Final

from carevault_crypto import _primitives
from carevault_crypto._encoding import encode_parts
from carevault_crypto.context import PatientContext
from carevault_crypto.keys import PatientKey

__all__ = ["VERIFIER_SIZE", "create_verifier", "verify_patient_key"]

_VERSION: Final = b"\x01"
_SALT_SIZE: Final = 16
_TAG_SIZE: Final = 32
_LABEL: Final = b"carevault/verifier/v1"
VERIFIER_SIZE: Final = 1 + _SALT_SIZE + _TAG_SIZE


def _tag(patient_key: PatientKey, ctx: PatientContext, header: bytes) -> bytes:
    ctx_bytes = ctx.encode()
    sub_key = _primitives.hkdf(patient_key._raw, salt=header[1:], info=encode_parts(_LABEL, ctx_bytes))
    return _primitives.hmac_sha256(sub_key, encode_parts(_LABEL, header, ctx_bytes))


def create_verifier(patient_key: PatientKey, ctx: PatientContext) -> bytes:
    """A new verifier blob (fresh random salt) for ``patient_key`` in ``ctx``."""
    header = _VERSION + _primitives.random_bytes(_SALT_SIZE)
    return header + _tag(patient_key, ctx, header)


def verify_patient_key(patient_key: PatientKey, ctx: PatientContext, verifier: bytes) -> bool:
    """True iff ``verifier`` was created for this key and context (constant-time compare).

    A verifier of the wrong length or an unknown version yields ``False`` (these
    structural checks depend only on the stored blob, not on the key).
    """
    if len(verifier) != VERIFIER_SIZE or verifier[:1] != _VERSION:
        return False
    header = bytes(verifier[: 1 + _SALT_SIZE])
    expected = _tag(patient_key, ctx, header)
    return _primitives.constant_time_equal(expected, bytes(verifier[1 + _SALT_SIZE :]))
