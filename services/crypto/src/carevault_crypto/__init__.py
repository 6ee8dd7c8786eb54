"""carevault's one crypto surface.

One interface per purpose, Tink/Fernet style: opaque keys, no nonce parameters, no
mode choice, versioned blobs, one :class:`DecryptionError` for every failure.

* keys:        :class:`PatientKey`, :class:`FileKey` (opaque; export via
               :mod:`carevault_crypto.export` only)
* contexts:    :class:`PatientContext`, :class:`RecordContext`
* key check:   :func:`create_verifier`, :func:`verify_patient_key`
* keyring:     :class:`PatientKeyring` (master key wrapping, record AEAD, blind
               index, file-key wrapping)
* streaming:   :class:`StreamingEncryptor`, :class:`StreamingDecryptor`,
               :class:`RandomAccessDecryptor`, :func:`segments_for_range`, sizes
* escrow:      :mod:`carevault_crypto.escrow` (HPKE for the hosting doctor), imported
               as that module; nothing of it is re-exported here.
* audit:       :mod:`carevault_crypto.checkpoint` (Ed25519 signed checkpoints of the
               audit chain) and :mod:`carevault_crypto.pseudonym` (keyed pseudonyms
               of patient ids), imported as modules likewise.

See services/crypto/README.md for the key hierarchy and the blob formats.
"""

from carevault_crypto.context import PatientContext, RecordContext
from carevault_crypto.errors import DecryptionError, InvalidKeyFormat
from carevault_crypto.keyring import PatientKeyring
from carevault_crypto.keys import FileKey, PatientKey
from carevault_crypto.streaming import (
    DEFAULT_SEGMENT_SIZE,
    SEGMENT_SIZES,
    RandomAccessDecryptor,
    SegmentRange,
    StreamingDecryptor,
    StreamingEncryptor,
    ciphertext_size,
    plaintext_size,
    segments_for_range,
)
from carevault_crypto.verifier import create_verifier, verify_patient_key

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "SEGMENT_SIZES",
    "DecryptionError",
    "FileKey",
    "InvalidKeyFormat",
    "PatientContext",
    "PatientKey",
    "PatientKeyring",
    "RandomAccessDecryptor",
    "RecordContext",
    "SegmentRange",
    "StreamingDecryptor",
    "StreamingEncryptor",
    "ciphertext_size",
    "create_verifier",
    "plaintext_size",
    "segments_for_range",
    "verify_patient_key",
]
