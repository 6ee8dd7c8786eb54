"""Streaming AEAD: sizes, chunking, truncation, reordering, swapping, random access."""

from __future__ import annotations

import hashlib

import pytest

from carevault_crypto import (
    DEFAULT_SEGMENT_SIZE,
    SEGMENT_SIZES,
    DecryptionError,
    FileKey,
    RandomAccessDecryptor,
    StreamingDecryptor,
    StreamingEncryptor,
    ciphertext_size,
    plaintext_size,
    segments_for_range,
)
from carevault_crypto.streaming import HEADER_SIZE

SEG = 4096
CT_SEG = SEG + 16
AD = b"file:0f1e2d3c"
SIZES = [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 5, 5 * SEG]


def data(size: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:size]


def encrypt(key: FileKey, plaintext: bytes, chunk: int = 1000, ad: bytes = AD) -> bytes:
    enc = StreamingEncryptor(key, ad, segment_size=SEG)
    parts = [enc.header]
    for i in range(0, len(plaintext), chunk):
        out = enc.update(plaintext[i : i + chunk])
        assert len(out) % CT_SEG == 0
        parts.append(out)
    parts.append(enc.finalize())
    return b"".join(parts)


def decrypt(key: FileKey, stored: bytes, chunk: int = 777, ad: bytes = AD) -> bytes:
    dec = StreamingDecryptor(key, ad, stored[:HEADER_SIZE])
    body = stored[HEADER_SIZE:]
    parts = [dec.update(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    parts.append(dec.finalize())
    return b"".join(parts)


@pytest.fixture
def key() -> FileKey:
    return FileKey.generate()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunk", [1, 1000, SEG, 10**6])
def test_round_trip(key: FileKey, size: int, chunk: int) -> None:
    plaintext = data(size)
    stored = encrypt(key, plaintext, chunk)
    assert len(stored) == ciphertext_size(size, segment_size=SEG)
    assert plaintext_size(len(stored), segment_size=SEG) == size
    assert decrypt(key, stored, chunk) == plaintext
    assert decrypt(key, stored, len(stored)) == plaintext


def test_empty_file_is_one_empty_last_segment(key: FileKey) -> None:
    stored = encrypt(key, b"")
    assert len(stored) == HEADER_SIZE + 16
    assert decrypt(key, stored) == b""
    with pytest.raises(DecryptionError):
        decrypt(key, stored[:HEADER_SIZE])


def test_default_and_all_segment_sizes(key: FileKey) -> None:
    assert DEFAULT_SEGMENT_SIZE == 64 * 1024
    plaintext = data(200_000)
    for size in SEGMENT_SIZES:
        enc = StreamingEncryptor(key, AD, segment_size=size)
        stored = enc.header + enc.update(plaintext) + enc.finalize()
        assert len(stored) == ciphertext_size(len(plaintext), segment_size=size)
        dec = StreamingDecryptor(key, AD, stored[:HEADER_SIZE])
        assert dec.update(stored[HEADER_SIZE:]) + dec.finalize() == plaintext
    enc = StreamingEncryptor(key, AD)
    assert enc.header[1] == 2  # default is code 2 = 64 KiB
    with pytest.raises(ValueError, match="segment_size"):
        StreamingEncryptor(key, AD, segment_size=1000)


def test_encryptor_buffers_at_most_one_segment(key: FileKey) -> None:
    enc = StreamingEncryptor(key, AD, segment_size=SEG)
    assert enc.update(data(SEG)) == b""  # might be the last one: held back
    assert len(enc.update(b"x")) == CT_SEG
    assert len(enc.update(data(3 * SEG))) == 3 * CT_SEG
    assert len(enc.finalize()) == 1 + 16


def test_decryptor_releases_authenticated_segments_early(key: FileKey) -> None:
    plaintext = data(3 * SEG + 5)
    stored = encrypt(key, plaintext)
    dec = StreamingDecryptor(key, AD, stored[:HEADER_SIZE])
    assert dec.update(stored[HEADER_SIZE : HEADER_SIZE + CT_SEG]) == b""
    assert dec.update(stored[HEADER_SIZE + CT_SEG : HEADER_SIZE + CT_SEG + 1]) == plaintext[:SEG]


def test_finalize_twice_and_update_after_finalize(key: FileKey) -> None:
    enc = StreamingEncryptor(key, AD, segment_size=SEG)
    enc.finalize()
    with pytest.raises(RuntimeError):
        enc.update(b"x")
    with pytest.raises(RuntimeError):
        enc.finalize()
    stored = encrypt(key, b"abc")
    dec = StreamingDecryptor(key, AD, stored[:HEADER_SIZE])
    dec.update(stored[HEADER_SIZE:])
    dec.finalize()
    with pytest.raises(DecryptionError):
        dec.finalize()


def _segments(stored: bytes) -> tuple[bytes, list[bytes]]:
    body = stored[HEADER_SIZE:]
    return stored[:HEADER_SIZE], [body[i : i + CT_SEG] for i in range(0, len(body), CT_SEG)]


def test_truncation_detected(key: FileKey) -> None:
    stored = encrypt(key, data(3 * SEG + 5))
    header, segments = _segments(stored)
    assert len(segments) == 4
    for kept in range(4):  # drop the last segment(s): an exact segment boundary
        with pytest.raises(DecryptionError):
            decrypt(key, header + b"".join(segments[:kept]))
    for cut in (1, 16, CT_SEG - 1, CT_SEG + 17, len(stored) - HEADER_SIZE - 1):
        with pytest.raises(DecryptionError):
            decrypt(key, stored[: HEADER_SIZE + cut])


def test_truncation_of_full_last_segment_detected(key: FileKey) -> None:
    stored = encrypt(key, data(3 * SEG))
    with pytest.raises(DecryptionError):
        decrypt(key, stored[:-CT_SEG])


def test_extension_detected(key: FileKey) -> None:
    stored = encrypt(key, data(2 * SEG))
    other = encrypt(key, data(2 * SEG + 1))
    _, other_segments = _segments(other)
    with pytest.raises(DecryptionError):
        decrypt(key, stored + b"\x00")
    with pytest.raises(DecryptionError):
        decrypt(key, stored + other_segments[-1])


def test_reorder_detected(key: FileKey) -> None:
    header, segments = _segments(encrypt(key, data(3 * SEG + 5)))
    for order in ([1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 3, 2], [0, 0, 2, 3]):
        with pytest.raises(DecryptionError):
            decrypt(key, header + b"".join(segments[i] for i in order))


def test_swap_between_files_detected(key: FileKey) -> None:
    header_a, seg_a = _segments(encrypt(key, data(3 * SEG + 5)))
    _, seg_b = _segments(encrypt(key, data(3 * SEG + 5)))  # same key, same AD
    for i in range(4):
        mixed = seg_a.copy()
        mixed[i] = seg_b[i]
        with pytest.raises(DecryptionError):
            decrypt(key, header_a + b"".join(mixed))


def test_every_flip_detected(key: FileKey) -> None:
    stored = encrypt(key, data(SEG + 10))
    for i in range(len(stored)):
        altered = bytearray(stored)
        altered[i] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt(key, bytes(altered), chunk=len(stored))


def test_header_tamper_wrong_key_wrong_ad_fail_at_construction(key: FileKey) -> None:
    stored = encrypt(key, data(10))
    header = stored[:HEADER_SIZE]
    for i in range(HEADER_SIZE):
        altered = bytearray(header)
        altered[i] ^= 0x80
        with pytest.raises(DecryptionError):
            StreamingDecryptor(key, AD, bytes(altered))
        with pytest.raises(DecryptionError):
            RandomAccessDecryptor(key, AD, bytes(altered))
    with pytest.raises(DecryptionError):
        StreamingDecryptor(FileKey.generate(), AD, header)
    with pytest.raises(DecryptionError):
        StreamingDecryptor(key, AD + b"x", header)
    with pytest.raises(DecryptionError):
        StreamingDecryptor(key, AD, header[:-1])
    resized = bytearray(header)
    resized[1] = 2  # claim 64 KiB segments: the commitment no longer matches
    with pytest.raises(DecryptionError):
        StreamingDecryptor(key, AD, bytes(resized))


def test_decryptor_is_poisoned_after_failure(key: FileKey) -> None:
    stored = bytearray(encrypt(key, data(3 * SEG)))
    stored[HEADER_SIZE] ^= 1
    dec = StreamingDecryptor(key, AD, bytes(stored[:HEADER_SIZE]))
    with pytest.raises(DecryptionError):
        dec.update(bytes(stored[HEADER_SIZE:]))
    with pytest.raises(DecryptionError):
        dec.update(b"")
    with pytest.raises(DecryptionError):
        dec.finalize()


def test_sizes() -> None:
    assert ciphertext_size(0, segment_size=SEG) == HEADER_SIZE + 16
    assert ciphertext_size(SEG, segment_size=SEG) == HEADER_SIZE + CT_SEG
    assert ciphertext_size(SEG + 1, segment_size=SEG) == HEADER_SIZE + CT_SEG + 17
    for size in [*SIZES, 10 * SEG - 1]:
        assert plaintext_size(ciphertext_size(size, segment_size=SEG), segment_size=SEG) == size
    for impossible in (0, HEADER_SIZE, HEADER_SIZE + 15, HEADER_SIZE + CT_SEG + 16):
        with pytest.raises(DecryptionError):
            plaintext_size(impossible, segment_size=SEG)
    with pytest.raises(ValueError, match="size"):
        ciphertext_size(-1)


@pytest.mark.parametrize("total", [1, SEG, 3 * SEG, 3 * SEG + 5])
def test_random_access_at_segment_edges(key: FileKey, total: int) -> None:
    plaintext = data(total)
    stored = encrypt(key, plaintext)
    reader = RandomAccessDecryptor(key, AD, stored[:HEADER_SIZE])
    assert reader.segment_size == SEG
    points = sorted({p for e in range(0, total + 1, SEG) for p in (e - 1, e, e + 1) if 0 <= p <= total} | {0, total})
    for start in points:
        for end in points:
            if start >= end:
                continue
            rng = segments_for_range(total, start, end, segment_size=SEG)
            fetched = stored[rng.ciphertext_start : rng.ciphertext_end]
            assert rng.ciphertext_end <= len(stored)
            assert len(fetched) <= (rng.last_segment - rng.first_segment + 1) * CT_SEG
            assert reader.decrypt_range(rng, fetched) == plaintext[start:end]


def test_random_access_plan() -> None:
    rng = segments_for_range(3 * SEG + 5, SEG, SEG + 1, segment_size=SEG)
    assert (rng.first_segment, rng.last_segment, rng.segment_count) == (1, 1, 4)
    assert (rng.ciphertext_start, rng.ciphertext_end) == (
        HEADER_SIZE + CT_SEG,
        HEADER_SIZE + 2 * CT_SEG,
    )
    assert (rng.skip, rng.length) == (0, 1)
    last = segments_for_range(3 * SEG + 5, 3 * SEG, 3 * SEG + 5, segment_size=SEG)
    assert last.ciphertext_end == ciphertext_size(3 * SEG + 5, segment_size=SEG)
    for bad in ((0, 0), (5, 4), (-1, 3), (0, 3 * SEG + 6)):
        with pytest.raises(ValueError, match="start"):
            segments_for_range(3 * SEG + 5, *bad, segment_size=SEG)


def test_decrypt_segment_checks_index_and_last_flag(key: FileKey) -> None:
    stored = encrypt(key, data(3 * SEG + 5))
    header, segments = _segments(stored)
    reader = RandomAccessDecryptor(key, AD, header)
    assert reader.decrypt_segment(1, segments[1], is_last=False) == data(3 * SEG + 5)[SEG : 2 * SEG]
    with pytest.raises(DecryptionError):
        reader.decrypt_segment(2, segments[1], is_last=False)
    with pytest.raises(DecryptionError):
        reader.decrypt_segment(1, segments[1], is_last=True)
    with pytest.raises(DecryptionError):
        reader.decrypt_segment(3, segments[3], is_last=False)
    assert reader.decrypt_segment(3, segments[3], is_last=True) == data(3 * SEG + 5)[3 * SEG :]


def test_range_on_truncated_object_detected(key: FileKey) -> None:
    """Sizing from a truncated object makes the new 'last' segment fail its last flag."""
    stored = encrypt(key, data(3 * SEG + 5))[: -(5 + 16)]
    total = plaintext_size(len(stored), segment_size=SEG)
    reader = RandomAccessDecryptor(key, AD, stored[:HEADER_SIZE])
    rng = segments_for_range(total, total - 10, total, segment_size=SEG)
    with pytest.raises(DecryptionError):
        reader.decrypt_range(rng, stored[rng.ciphertext_start : rng.ciphertext_end])


def test_range_with_wrong_segment_size_or_length_refused(key: FileKey) -> None:
    stored = encrypt(key, data(2 * SEG))
    reader = RandomAccessDecryptor(key, AD, stored[:HEADER_SIZE])
    with pytest.raises(ValueError, match="segment size"):
        reader.decrypt_range(segments_for_range(2 * SEG, 0, 10), stored[HEADER_SIZE:])
    rng = segments_for_range(2 * SEG, 0, 10, segment_size=SEG)
    with pytest.raises(DecryptionError):
        reader.decrypt_range(rng, stored[rng.ciphertext_start : rng.ciphertext_end - 1])


def test_update_segments_are_the_segments_update_joins() -> None:
    from carevault_crypto import FileKey, StreamingDecryptor, StreamingEncryptor

    key, data = FileKey.generate(), bytes(range(256)) * 1000
    encryptor = StreamingEncryptor(key, b"ad", segment_size=4096)
    parts: list[bytes] = []
    for start in range(0, len(data), 10_000):
        segments = encryptor.update_segments(data[start : start + 10_000])
        assert all(len(s) == 4096 + 16 for s in segments)
        parts += segments
    stored = encryptor.header + b"".join(parts) + encryptor.finalize()
    decryptor = StreamingDecryptor(key, b"ad", stored[:73])
    assert decryptor.update(stored[73:]) + decryptor.finalize() == data


def test_the_benchmark_reference_seals_every_chunk() -> None:
    from carevault_crypto.measure import aes256gcm_seconds

    assert aes256gcm_seconds([]) == 0.0
    assert aes256gcm_seconds([b"x" * 65536] * 4) > 0.0
