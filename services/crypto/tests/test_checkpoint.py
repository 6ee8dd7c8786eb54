"""Checkpoint signatures (Ed25519) and keyed pseudonyms of the audit trail."""

from __future__ import annotations

import copy
import pickle

import pytest
from crypto_helpers import flips

from carevault_crypto import InvalidKeyFormat, _primitives
from carevault_crypto.checkpoint import CheckpointSigner, CheckpointVerifier, _signer_seed, generate_checkpoint_signer
from carevault_crypto.export import checkpoint_signer_to_text, pseudonym_key_to_text
from carevault_crypto.pseudonym import PseudonymKey

# RFC 8032, section 7.1, TEST 1 (empty message) and TEST 2 (one byte).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_ed25519_primitive_matches_rfc8032(seed: str, public: str, message: str, signature: str) -> None:
    assert _primitives.ed25519_public(bytes.fromhex(seed)).hex() == public
    assert _primitives.ed25519_sign(bytes.fromhex(seed), bytes.fromhex(message)).hex() == signature
    assert _primitives.ed25519_verify(bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message))


def test_sign_and_verify_round_trip_through_the_key_files() -> None:
    signer = generate_checkpoint_signer()
    loaded = CheckpointSigner.from_text(checkpoint_signer_to_text(signer))
    verifier = CheckpointVerifier.from_text(signer.verifier().to_text())
    assert loaded.key_id == signer.key_id == verifier.key_id
    assert len(signer.key_id) == 32
    payload = b"seq=42 hash=abc"
    signature = loaded.sign(payload)
    assert len(signature) == 64
    assert signature == signer.sign(payload)  # deterministic
    assert verifier.verify(payload, signature)


def test_any_change_to_payload_or_signature_is_refused() -> None:
    signer = generate_checkpoint_signer()
    verifier = signer.verifier()
    payload = b"checkpoint payload"
    signature = signer.sign(payload)
    for _, altered in flips(signature):
        assert not verifier.verify(payload, altered)
    for _, altered in flips(payload):
        assert not verifier.verify(altered, signature)
    assert not verifier.verify(payload, signature[:-1])
    assert not generate_checkpoint_signer().verifier().verify(payload, signature)


def test_signatures_are_bound_to_the_checkpoint_purpose() -> None:
    # The key never signs a bare message: a raw Ed25519 signature over the payload
    # (what another use of the same key would make) does not verify.
    signer = generate_checkpoint_signer()
    raw = _primitives.ed25519_sign(_signer_seed(signer), b"payload")
    assert not signer.verifier().verify(b"payload", raw)
    assert signer.verifier().verify(b"payload", signer.sign(b"payload"))


def test_signing_key_is_opaque() -> None:
    signer = generate_checkpoint_signer()
    assert repr(signer) == str(signer) == f"{signer}" == "***"
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            attempt(signer)
    with pytest.raises(TypeError):
        CheckpointSigner(b"\x00" * 32)


@pytest.mark.parametrize("text", ["", "carevault-checkpoint-key.v1.", "carevault-checkpoint-pub.v1." + "A" * 43, "x" * 80])
def test_malformed_key_files_are_refused_without_echo(text: str) -> None:
    with pytest.raises(InvalidKeyFormat) as info:
        CheckpointSigner.from_text(text)
    assert text[30:] == "" or text[30:] not in str(info.value)
    if not text.startswith("carevault-checkpoint-pub.v1."):
        with pytest.raises(InvalidKeyFormat):
            CheckpointVerifier.from_text(text)


def test_pseudonyms_are_keyed_stable_and_unambiguous() -> None:
    key = PseudonymKey.generate()
    again = PseudonymKey.from_text(pseudonym_key_to_text(key))
    first = key.pseudonym("tenant-a", "patient-1")
    assert len(first) == 32 and int(first, 16) >= 0
    assert again.pseudonym("tenant-a", "patient-1") == first
    assert key.pseudonym("tenant-b", "patient-1") != first
    assert key.pseudonym("tenant-ap", "atient-1") != first  # parts are length-prefixed
    assert PseudonymKey.generate().pseudonym("tenant-a", "patient-1") != first
    assert repr(key) == "***"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(InvalidKeyFormat):
        PseudonymKey.from_text("carevault-pseudonym-key.v1.short")
