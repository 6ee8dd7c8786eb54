"""The ONE place where clear key material leaves an opaque key object.

Reviewed surface: every function here returns a secret. Use it only in client
tools, tests, and at the single boundary where a key must be sent on
(``X-Patient-Key`` header; a file key handed to ``fileservice`` over mTLS). Never
log the result, never store it.

* ``patient_key_to_header(key)`` - base64url without padding of the 32 bytes
  (43 characters); the inverse is :meth:`PatientKey.from_header`.
* ``file_key_to_transport(key)`` - base64url without padding of
  ``0x01 | key(32)`` (44 characters); the inverse is :meth:`FileKey.from_transport`.
* ``checkpoint_signer_to_text(signer)`` / ``pseudonym_key_to_text(key)`` - the key
  files of the audit trail, written once by ``carevault audit keygen``; the inverses
  are :meth:`CheckpointSigner.from_text` and :meth:`PseudonymKey.from_text`.
"""

from __future__ import annotations

from carevault_crypto._encoding import b64url_encode
from carevault_crypto.checkpoint import PRIVATE_PREFIX, CheckpointSigner, _signer_seed
from carevault_crypto.keys import FileKey, PatientKey, _file_key_transport_bytes
from carevault_crypto.pseudonym import PREFIX as PSEUDONYM_PREFIX
from carevault_crypto.pseudonym import PseudonymKey

__all__ = ["checkpoint_signer_to_text", "file_key_to_transport", "patient_key_to_header", "pseudonym_key_to_text"]


def patient_key_to_header(key: PatientKey) -> str:
    """The ``X-Patient-Key`` header value for ``key`` (a secret)."""
    if not isinstance(key, PatientKey):
        raise TypeError("expected a PatientKey")
    return b64url_encode(key._raw)


def file_key_to_transport(key: FileKey) -> str:
    """The versioned transport string for ``key`` (a secret)."""
    if not isinstance(key, FileKey):
        raise TypeError("expected a FileKey")
    return b64url_encode(_file_key_transport_bytes(key))


def checkpoint_signer_to_text(signer: CheckpointSigner) -> str:
    """The private checkpoint key file for ``signer`` (a secret)."""
    if not isinstance(signer, CheckpointSigner):
        raise TypeError("expected a CheckpointSigner")
    return PRIVATE_PREFIX + b64url_encode(_signer_seed(signer)) + "\n"


def pseudonym_key_to_text(key: PseudonymKey) -> str:
    """The pseudonym key file for ``key`` (a secret)."""
    if not isinstance(key, PseudonymKey):
        raise TypeError("expected a PseudonymKey")
    return PSEUDONYM_PREFIX + b64url_encode(key._raw) + "\n"
