"""The two exceptions of the crypto surface.

* :class:`DecryptionError` is raised for *every* decryption or integrity failure:
  wrong key, wrong context, tampered/truncated/reordered data, unknown format
  version. Its message is always the same, so that nothing about *why* a blob was
  refused leaks to logs or to a caller (no padding-oracle style distinctions).
* :class:`InvalidKeyFormat` (a :class:`ValueError`) is raised when key material
  supplied from outside (an ``X-Patient-Key`` header, a file-key transport string)
  is malformed. Its message never contains the input.
"""

from __future__ import annotations

__all__ = ["DecryptionError", "InvalidKeyFormat"]

_DECRYPTION_FAILED = "decryption failed"


class DecryptionError(Exception):
    """Decryption or integrity check failed. The message is always the same."""

    def __init__(self, *_ignored: object) -> None:
        # Whatever a caller passes is dropped: the message must never vary.
        super().__init__(_DECRYPTION_FAILED)


class InvalidKeyFormat(ValueError):
    """Key material from outside is malformed. The message never echoes the input."""
