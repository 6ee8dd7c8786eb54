"""A reference figure for benchmarks: plain AES-256-GCM over some bytes, one core.

The files benchmark (tests/bench/scenarios/files.py) compares the mesh's upload and
download rates with what one core does with nothing but the cipher: AES-256-GCM
(the primitive of the streaming AEAD and of TLS) sealing the same bytes, chunk by
chunk, under a throw-away random key. Nothing here is used to protect data; it lives
in the crypto library because nobody else may import a cipher.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from carevault_crypto import _primitives

__all__ = ["aes256gcm_seconds"]


def aes256gcm_seconds(chunks: Iterable[_primitives.BytesLike]) -> float:
    """Seconds this process spends sealing every chunk with AES-256-GCM (a fresh
    nonce per chunk, as the streaming AEAD does per segment). Only the sealing is
    timed, not producing the chunks."""
    cipher = _primitives.SegmentCipher(_primitives.random_bytes(_primitives.KEY_SIZE), _primitives.random_bytes(7))
    spent = 0.0
    for index, chunk in enumerate(chunks):
        started = time.perf_counter()
        cipher.seal(index, False, chunk)
        spent += time.perf_counter() - started
    return spent
