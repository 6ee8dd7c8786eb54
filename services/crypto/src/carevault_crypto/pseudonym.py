"""Keyed pseudonyms of identifiers (HMAC-SHA-256), for the audit trail and the
erasure journal.

api records *which patient* an access concerned, and *which patients were
erased*, without keeping their ids in clear: it keeps
``HMAC(pseudonym key, parts("carevault/pseudonym/v1", tenant, patient id))``,
truncated to 128 bits (32 hex characters). Whoever knows a patient id and holds
the key can find that patient's entries (an auditor answering the patient, the
erasure replay after a restore); the stored pseudonyms alone reveal nothing and
cannot be linked to another dataset.

Key file: one line ``carevault-pseudonym-key.v1.<base64url, 32 bytes>``. Its text
form leaves the opaque :class:`PseudonymKey` only through
:func:`carevault_crypto.export.pseudonym_key_to_text`.
"""

from __future__ import annotations

from typing import Final

from carevault_crypto import _primitives
from carevault_crypto._encoding import b64url_decode, encode_parts
from carevault_crypto.errors import InvalidKeyFormat
from carevault_crypto.keys import _TOKEN, _SecretKey

__all__ = ["PseudonymKey"]

_LABEL: Final = b"carevault/pseudonym/v1"
PREFIX: Final = "carevault-pseudonym-key.v1."
PSEUDONYM_HEX_LENGTH: Final = 32


class PseudonymKey(_SecretKey):
    """A 32-byte HMAC key: opaque like every key here (prints ``***``, refuses to pickle)."""

    __slots__ = ()

    @classmethod
    def generate(cls) -> PseudonymKey:
        return cls(_primitives.random_bytes(_primitives.KEY_SIZE), _token=_TOKEN)

    @classmethod
    def from_text(cls, text: str) -> PseudonymKey:
        line = text.strip()
        raw = b64url_decode(line.removeprefix(PREFIX), _primitives.KEY_SIZE) if line.startswith(PREFIX) else None
        if raw is None:
            raise InvalidKeyFormat("not a carevault pseudonym key file")
        return cls(raw, _token=_TOKEN)

    def pseudonym(self, *parts: str) -> str:
        """32 hex characters naming ``parts`` (e.g. tenant, patient id) under this key."""
        mac = _primitives.hmac_sha256(self._raw, encode_parts(_LABEL, *(p.encode("utf-8") for p in parts)))
        return mac[: PSEUDONYM_HEX_LENGTH // 2].hex()
