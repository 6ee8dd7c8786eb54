"""A software WebAuthn authenticator for the tests: a P-256 key, attestation ``none``,
client data and authenticator data built by hand as a browser and an authenticator
would (W3C WebAuthn Level 2, §5.8.1, §6.1, §6.5.4, §8.7), so that the tests can also
build what a broken or cloned one would send (flags, origin, RP id, counter).

No real authenticator can run here; this stands in for one, and is the only mock of
these tests. It is test code: the tests may use pyca/cryptography directly (only the
services are bound to carevault_crypto)."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One discoverable credential on a software authenticator."""

    origin: str
    rp_id: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0
    user_handle: bytes = b""

    def _cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return bytes(cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}))

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return orjson.dumps({"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False})

    def _auth_data(self, flags: int, count: int, rp_id: str | None, attested: bytes = b"") -> bytes:
        return hashlib.sha256((rp_id or self.rp_id).encode()).digest() + bytes([flags]) + struct.pack(">I", count) + attested

    def create(
        self, options: dict[str, Any], *, user_verified: bool = True, origin: str | None = None, rp_id: str | None = None
    ) -> dict[str, Any]:
        """navigator.credentials.create(): a RegistrationResponseJSON."""
        self.user_handle = unb64url(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_public_key()
        flags = UP | AT | (UV if user_verified else 0)
        auth_data = self._auth_data(flags, self.sign_count, rp_id, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation), "transports": ["internal"]},
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        user_verified: bool = True,
        origin: str | None = None,
        rp_id: str | None = None,
        count: int | None = None,
    ) -> str:
        """navigator.credentials.get(): an AuthenticationResponseJSON, as the text the
        sign-in form carries. The counter moves forward unless ``count`` says otherwise
        (a clone replays the counter it was copied with)."""
        if count is None:
            self.sign_count += 1
            count = self.sign_count
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._auth_data(UP | (UV if user_verified else 0), count, rp_id)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return orjson.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(self.user_handle),
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform",
            }
        ).decode()
