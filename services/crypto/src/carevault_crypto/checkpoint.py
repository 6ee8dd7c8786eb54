"""Signed checkpoints of the audit trail: Ed25519 (RFC 8032), one purpose only.

The audit trail is a hash chain stored in api's database. Whoever can write to that
database could rewrite the chain and recompute every hash; a **checkpoint** - the
chain head (sequence number and hash) signed with a key the database does not hold
- makes such a rewrite detectable by anyone holding the public key.

* :class:`CheckpointSigner` - the private half: opaque (prints ``***``, refuses to
  pickle), read from a file outside the database. Its text form leaves it only
  through :func:`carevault_crypto.export.checkpoint_signer_to_text`.
* :class:`CheckpointVerifier` - the public half, safe to publish and configure
  wherever the trail is verified (``carevault audit verify``).

Every signature covers ``parts("carevault/audit-checkpoint/v1", payload)``: the key
signs checkpoint payloads and nothing else, so a signature cannot be replayed as
one for another purpose. Key files are one line each::

    carevault-checkpoint-key.v1.<base64url seed, 32 bytes>
    carevault-checkpoint-pub.v1.<base64url public key, 32 bytes>

The key id is 32 hex characters of SHA-256(label, public key).
"""

from __future__ import annotations

from typing import Final

from carevault_crypto import _primitives
from carevault_crypto._encoding import b64url_decode, b64url_encode, encode_parts
from carevault_crypto.errors import InvalidKeyFormat
from carevault_crypto.keys import _TOKEN, _SecretKey

__all__ = ["CheckpointSigner", "CheckpointVerifier", "generate_checkpoint_signer"]

_LABEL: Final = b"carevault/audit-checkpoint/v1"
_KEY_ID_LABEL: Final = b"carevault/audit-checkpoint-key-id/v1"
PRIVATE_PREFIX: Final = "carevault-checkpoint-key.v1."
PUBLIC_PREFIX: Final = "carevault-checkpoint-pub.v1."
SIGNATURE_SIZE: Final = _primitives.ED25519_SIGNATURE_SIZE


def _key_id(public: bytes) -> str:
    return _primitives.sha256(encode_parts(_KEY_ID_LABEL, public))[:16].hex()


def _message(payload: bytes) -> bytes:
    return encode_parts(_LABEL, payload)


class CheckpointVerifier:
    """An Ed25519 public key that checks checkpoint signatures."""

    __slots__ = ("_key_id", "_public")

    def __init__(self, public: bytes, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use CheckpointVerifier.from_text() or CheckpointSigner.verifier()")
        self._public = bytes(public)
        self._key_id = _key_id(self._public)

    @classmethod
    def from_text(cls, text: str) -> CheckpointVerifier:
        """Parse a public key file; :class:`InvalidKeyFormat` if it is not one."""
        line = text.strip()
        raw = b64url_decode(line.removeprefix(PUBLIC_PREFIX), _primitives.ED25519_PUBLIC_SIZE) if line.startswith(PUBLIC_PREFIX) else None
        if raw is None:
            raise InvalidKeyFormat("not a carevault checkpoint public key file")
        return cls(raw, _token=_TOKEN)

    def to_text(self) -> str:
        return PUBLIC_PREFIX + b64url_encode(self._public) + "\n"

    @property
    def key_id(self) -> str:
        return self._key_id

    def verify(self, payload: bytes, signature: bytes) -> bool:
        """True iff ``signature`` was made by this key's signer over ``payload``."""
        return _primitives.ed25519_verify(self._public, signature, _message(payload))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CheckpointVerifier):
            return NotImplemented
        return self._public == other._public

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"CheckpointVerifier(key_id={self._key_id!r})"


class CheckpointSigner(_SecretKey):
    """The private checkpoint key (its 32-byte seed): opaque like every key here,
    never in the audit database."""

    __slots__ = ("_verifier",)

    def __init__(self, seed: bytes, *, _token: object = None) -> None:
        super().__init__(seed, _token=_token)
        try:
            public = _primitives.ed25519_public(self._raw)
        except ValueError:
            raise InvalidKeyFormat("not a valid checkpoint signing key") from None
        self._verifier = CheckpointVerifier(public, _token=_TOKEN)

    @classmethod
    def from_text(cls, text: str) -> CheckpointSigner:
        """Parse a private key file; :class:`InvalidKeyFormat` (never echoing it) if malformed."""
        line = text.strip()
        raw = b64url_decode(line.removeprefix(PRIVATE_PREFIX), _primitives.ED25519_SEED_SIZE) if line.startswith(PRIVATE_PREFIX) else None
        if raw is None:
            raise InvalidKeyFormat("not a carevault checkpoint signing key file")
        return cls(raw, _token=_TOKEN)

    @property
    def key_id(self) -> str:
        return self._verifier.key_id

    def verifier(self) -> CheckpointVerifier:
        return self._verifier

    def sign(self, payload: bytes) -> bytes:
        """A 64-byte signature over ``payload`` (deterministic)."""
        return _primitives.ed25519_sign(self._raw, _message(payload))


def generate_checkpoint_signer() -> CheckpointSigner:
    """A new random checkpoint signing key."""
    return CheckpointSigner(_primitives.ed25519_generate(), _token=_TOKEN)


def _signer_seed(signer: CheckpointSigner) -> bytes:
    """Package-internal: the seed, for :mod:`carevault_crypto.export` only."""
    return signer._raw
