"""Private, key-free encodings shared by the crypto modules.

* :func:`encode_parts` is the one canonical, unambiguous byte encoding used for
  HKDF ``info``, AEAD associated data and HMAC inputs: every part is prefixed by
  its length as a 4-byte big-endian integer, so ``("ab", "c")`` and ``("a", "bc")``
  never encode to the same bytes.
* :func:`b64url_encode` / :func:`b64url_decode` are strict base64url without
  padding (RFC 4648 section 5): only the 64 URL-safe characters, no padding, no
  whitespace, and only the canonical encoding of a byte string is accepted.
"""

from __future__ import annotations

import base64
import binascii

_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_PART = 2**32 - 1


def encode_parts(*parts: bytes) -> bytes:
    """Length-prefix (4-byte big-endian) and concatenate ``parts``."""
    out = bytearray()
    for part in parts:
        if len(part) > _MAX_PART:
            raise ValueError("part too long to encode")
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, expected_len: int) -> bytes | None:
    """Strictly decode unpadded base64url of exactly ``expected_len`` bytes.

    Returns ``None`` on any problem (the caller raises its own, input-free error).
    """
    if not isinstance(text, str) or len(text) != (expected_len * 4 + 2) // 3:
        return None
    if not _B64URL_ALPHABET.issuperset(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Reject non-canonical encodings (non-zero unused trailing bits).
    if len(raw) != expected_len or b64url_encode(raw) != text:
        return None
    return raw
