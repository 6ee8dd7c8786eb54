"""api's secrets at rest: TOTP shared secrets and token-signing private keys are
sealed (``carevault_crypto.sealed``) under the key in ``API_SECRETS_KEY_FILE``
(and opened with ``API_SECRETS_PREVIOUS_KEY_FILE`` too, during a rotation), so
that a copy of api's database alone yields neither.

Each value is bound to what it is and to whom: ``api/totp-secret`` + the user id,
``api/signing-key`` + the key id. Values stored before sealing was configured
(plain text) are still read, and resealed when next written (signing keys: at
start). Without a key file (the dev environment only; the settings refuse
that elsewhere) values are stored in plain text.
"""

from __future__ import annotations

import logging
from pathlib import Path

from carevault_crypto.sealed import SealingKey, SecretSealer, is_sealed

logger = logging.getLogger("carevault.api.secrets")
TOTP = "api/totp-secret"
SIGNING_KEY = "api/signing-key"


class Secrets:
    def __init__(self, sealer: SecretSealer | None) -> None:
        self.sealer = sealer

    @classmethod
    def from_files(cls, key_file: Path | None, previous_key_file: Path | None = None) -> Secrets:
        if key_file is None:
            logger.warning("no API_SECRETS_KEY_FILE: TOTP secrets and signing keys are stored unencrypted (dev only)")
            return cls(None)
        previous = [SealingKey.from_file(previous_key_file)] if previous_key_file is not None else []
        return cls(SecretSealer(SealingKey.from_file(key_file), previous))

    def seal(self, value: str, *, purpose: str, owner: str) -> str:
        if self.sealer is None:
            return value
        return self.sealer.seal(value.encode(), purpose=purpose, context=owner)

    def open(self, stored: str, *, purpose: str, owner: str) -> str:
        """Raises ``carevault_crypto.DecryptionError`` for a sealed value that does not open."""
        if not is_sealed(stored):
            return stored  # stored before sealing was configured
        if self.sealer is None:
            from carevault_crypto import DecryptionError

            raise DecryptionError
        return self.sealer.open(stored, purpose=purpose, context=owner).decode()

    def needs_resealing(self, stored: str) -> bool:
        return self.sealer is not None and self.sealer.needs_resealing(stored)
