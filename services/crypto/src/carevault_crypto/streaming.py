"""Streaming AEAD for files (in the style of Tink's AES-GCM-HKDF streaming).

A file is encrypted as ``header | segment 0 | segment 1 | ... | segment n-1``.
Every segment but the last holds exactly ``segment_size`` plaintext bytes; the last
holds 1..segment_size bytes, or 0 bytes for the empty file (which is exactly one
empty last segment). Each ciphertext segment is ``AES-256-GCM(plaintext) | tag(16)``.

Header v1 (73 bytes)::

    0x01 | segment-size code (1) | salt (32) | nonce prefix (7) | commitment (32)

    codes: 0x01 = 4 KiB, 0x02 = 64 KiB (default), 0x03 = 1 MiB
    seg_key | commit_key = HKDF-SHA-256(ikm=file key, salt=salt,
                            info=parts("carevault/stream/v1", header[:41], associated))  (64 B)
    commitment = HMAC-SHA-256(commit_key, parts("carevault/stream-header/v1", header[:41]))
    nonce(i)   = nonce prefix (7) | i (4, big-endian) | 0x01 if last segment else 0x00

The header, the associated data and the file key all feed the segment key, and
the commitment is checked when a decryptor is built: a tampered header, a wrong
key or wrong associated data fail immediately with :class:`DecryptionError`. The
index in the nonce detects reordering, the last-segment flag detects truncation
at a segment boundary and extension, and the per-file salt detects swapping
segments between files.

Sequential decryption (:class:`StreamingDecryptor`) holds at most one ciphertext
segment in memory and releases a segment's plaintext only after that segment has
been authenticated. It must, however, hold back one full segment until it knows
whether it is the last, and **a truncation is only detected by** ``finalize()``:
data returned by ``update()`` is authentic but may be incomplete. Callers must not
treat it as the whole file (e.g. commit it, or send a success status) before
``finalize()`` has returned.

Random access (:func:`segments_for_range` + :class:`RandomAccessDecryptor`) decrypts
only the segments covering a plaintext byte range. It authenticates those segments
only: a Range response can't detect a truncation of segments it does not read.
All offsets below count from the first header byte of the stored object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NoReturn

from carevault_crypto import _primitives
from carevault_crypto._encoding import encode_parts
from carevault_crypto._opaque import Opaque
from carevault_crypto.errors import DecryptionError
from carevault_crypto.keys import FileKey

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "SEGMENT_SIZES",
    "RandomAccessDecryptor",
    "SegmentRange",
    "StreamingDecryptor",
    "StreamingEncryptor",
    "ciphertext_size",
    "plaintext_size",
    "segments_for_range",
]

_VERSION: Final = 1
_SALT_SIZE: Final = 32
_PREFIX_END: Final = 2 + _SALT_SIZE + _primitives.STREAM_NONCE_PREFIX_SIZE
HEADER_SIZE: Final = _PREFIX_END + _primitives.COMMITMENT_SIZE
_TAG: Final = _primitives.TAG_SIZE
_CODES: Final = {1: 4 * 1024, 2: 64 * 1024, 3: 1024 * 1024}
SEGMENT_SIZES: Final = tuple(_CODES.values())
DEFAULT_SEGMENT_SIZE: Final = 64 * 1024
_KEY_LABEL: Final = b"carevault/stream/v1"
_COMMIT_LABEL: Final = b"carevault/stream-header/v1"


def _check_segment_size(segment_size: int) -> None:
    if segment_size not in SEGMENT_SIZES:
        raise ValueError(f"segment_size must be one of {SEGMENT_SIZES}")


def _keys(file_key: FileKey, prefix: bytes, associated: bytes) -> tuple[bytes, bytes]:
    material = _primitives.hkdf(
        file_key._raw,
        salt=prefix[2 : 2 + _SALT_SIZE],
        info=encode_parts(_KEY_LABEL, prefix, bytes(associated)),
        length=2 * _primitives.KEY_SIZE,
    )
    commitment = _primitives.hmac_sha256(material[32:], encode_parts(_COMMIT_LABEL, prefix))
    return material[:32], commitment


def _open_header(file_key: FileKey, associated: bytes, header: bytes) -> tuple[_primitives.SegmentCipher, int]:
    header = bytes(header)
    if len(header) != HEADER_SIZE or header[0] != _VERSION or header[1] not in _CODES:
        raise DecryptionError
    prefix = header[:_PREFIX_END]
    seg_key, commitment = _keys(file_key, prefix, associated)
    if not _primitives.constant_time_equal(commitment, header[_PREFIX_END:]):
        raise DecryptionError
    cipher = _primitives.SegmentCipher(seg_key, prefix[2 + _SALT_SIZE :])
    return cipher, _CODES[header[1]]


def _full_segments(buf: bytearray, chunk: _primitives.BytesLike, size: int) -> list[memoryview]:
    """Cut off the ``size``-byte segments that are certainly not the last one.

    At most ``size`` bytes stay buffered in ``buf`` (the possibly-last segment);
    full segments are returned as views, without copying the caller's chunk.
    """
    view = memoryview(chunk).cast("B")
    if len(buf) + len(view) <= size:
        buf += view
        return []
    segments: list[memoryview] = []
    if buf:
        # Complete the buffered segment; data follows it, so it is not the last one.
        take = size - len(buf)
        buf += view[:take]
        segments.append(memoryview(bytes(buf)))
        buf.clear()
        view = view[take:]
    pos = 0
    while len(view) - pos > size:
        segments.append(view[pos : pos + size])
        pos += size
    buf += view[pos:]
    return segments


class StreamingEncryptor(Opaque):
    """Encrypt a file of any size in bounded memory.

    Write :attr:`header`, then everything returned by :meth:`update`, then what
    :meth:`finalize` returns.
    """

    __slots__ = ("_buf", "_cipher", "_done", "_index", "_seg", "header")

    def __init__(self, file_key: FileKey, associated: bytes, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        _check_segment_size(segment_size)
        code = next(c for c, size in _CODES.items() if size == segment_size)
        prefix = (
            bytes((_VERSION, code)) + _primitives.random_bytes(_SALT_SIZE) + _primitives.random_bytes(_primitives.STREAM_NONCE_PREFIX_SIZE)
        )
        seg_key, commitment = _keys(file_key, prefix, associated)
        self.header: bytes = prefix + commitment
        self._cipher = _primitives.SegmentCipher(seg_key, prefix[2 + _SALT_SIZE :])
        self._seg = segment_size
        self._buf = bytearray()
        self._index = 0
        self._done = False

    def update(self, chunk: _primitives.BytesLike) -> bytes:
        """Add plaintext; returns zero or more complete ciphertext segments."""
        return b"".join(self.update_segments(chunk))

    def update_segments(self, chunk: _primitives.BytesLike) -> list[bytes]:
        """As :meth:`update`, the ciphertext segments apart (no copy to join them)."""
        if self._done:
            raise RuntimeError("encryptor already finalized")
        out: list[bytes] = []
        # One segment is always held back: only finalize() knows which one is last.
        for segment in _full_segments(self._buf, chunk, self._seg):
            out.append(self._cipher.seal(self._index, False, segment))
            self._index += 1
        return out

    def finalize(self) -> bytes:
        """Encrypt the last (possibly empty) segment."""
        if self._done:
            raise RuntimeError("encryptor already finalized")
        self._done = True
        last = self._cipher.seal(self._index, True, bytes(self._buf))
        self._buf.clear()
        return last


class StreamingDecryptor(Opaque):
    """Decrypt sequentially in bounded memory; see the module docstring on truncation."""

    __slots__ = ("_buf", "_cipher", "_done", "_index", "_seg_ct")

    def __init__(self, file_key: FileKey, associated: bytes, header: bytes) -> None:
        """Raises :class:`DecryptionError` if the header is malformed or doesn't match."""
        self._cipher, segment_size = _open_header(file_key, associated, header)
        self._seg_ct = segment_size + _TAG
        self._buf = bytearray()
        self._index = 0
        self._done = False

    def update(self, chunk: _primitives.BytesLike) -> bytes:
        """Add ciphertext (after the header); returns authenticated plaintext, if any."""
        if self._done:
            raise DecryptionError
        out: list[bytes] = []
        try:
            for segment in _full_segments(self._buf, chunk, self._seg_ct):
                out.append(self._cipher.open(self._index, False, segment))
                self._index += 1
        except (DecryptionError, ValueError):
            self._fail()
        return b"".join(out)

    def finalize(self) -> bytes:
        """Authenticate the last segment; raises :class:`DecryptionError` on truncation."""
        if self._done:
            raise DecryptionError
        try:
            last = self._cipher.open(self._index, True, self._buf)
        except (DecryptionError, ValueError):
            self._fail()
        self._done = True
        self._buf.clear()
        return last

    def _fail(self) -> NoReturn:
        self._done = True
        self._buf.clear()
        raise DecryptionError


@dataclass(frozen=True, slots=True)
class SegmentRange:
    """The segments covering a plaintext range, and where they are in the object."""

    segment_size: int
    first_segment: int
    last_segment: int  # inclusive
    segment_count: int  # of the whole file
    ciphertext_start: int  # offset in the stored object (header included)
    ciphertext_end: int  # exclusive
    skip: int  # plaintext bytes to drop from the start of the first segment
    length: int  # plaintext bytes wanted


def _segment_count(size: int, segment_size: int) -> int:
    return max(1, -(-size // segment_size))


def ciphertext_size(plaintext_size: int, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Size of the stored object (header included) for a plaintext of this size."""
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("size must be >= 0")
    return HEADER_SIZE + plaintext_size + _TAG * _segment_count(plaintext_size, segment_size)


def plaintext_size(ciphertext_size: int, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Plaintext size for a stored object of this size; :class:`DecryptionError` if impossible."""
    _check_segment_size(segment_size)
    body = ciphertext_size - HEADER_SIZE
    if body < _TAG:
        raise DecryptionError
    count = _segment_count(body, segment_size + _TAG)
    last = body - (count - 1) * (segment_size + _TAG)
    if last < _TAG or (count > 1 and last == _TAG):
        raise DecryptionError
    return body - count * _TAG


def segments_for_range(plaintext_size: int, start: int, end: int, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> SegmentRange:
    """Which segments (and which ciphertext bytes) cover plaintext ``[start, end)``."""
    _check_segment_size(segment_size)
    if not 0 <= start < end <= plaintext_size:
        raise ValueError("need 0 <= start < end <= plaintext_size")
    first, last = start // segment_size, (end - 1) // segment_size
    seg_ct = segment_size + _TAG
    last_end = min((last + 1) * segment_size, plaintext_size)
    return SegmentRange(
        segment_size=segment_size,
        first_segment=first,
        last_segment=last,
        segment_count=_segment_count(plaintext_size, segment_size),
        ciphertext_start=HEADER_SIZE + first * seg_ct,
        ciphertext_end=HEADER_SIZE + last * seg_ct + (last_end - last * segment_size) + _TAG,
        skip=start - first * segment_size,
        length=end - start,
    )


class RandomAccessDecryptor(Opaque):
    """Decrypt individual segments (HTTP Range requests) of one stored file."""

    __slots__ = ("_cipher", "segment_size")

    def __init__(self, file_key: FileKey, associated: bytes, header: bytes) -> None:
        """Raises :class:`DecryptionError` if the header is malformed or doesn't match."""
        self._cipher, self.segment_size = _open_header(file_key, associated, header)

    def decrypt_segment(self, index: int, ciphertext_segment: _primitives.BytesLike, is_last: bool) -> bytes:
        """Authenticate and decrypt one segment."""
        if len(ciphertext_segment) > self.segment_size + _TAG:
            raise DecryptionError
        return self._cipher.open(index, is_last, ciphertext_segment)

    def decrypt_range(self, rng: SegmentRange, ciphertext: bytes) -> bytes:
        """Plaintext ``[start, end)`` from the bytes ``[ciphertext_start, ciphertext_end)``."""
        if rng.segment_size != self.segment_size:
            raise ValueError("range was planned for another segment size")
        if rng.ciphertext_end - rng.ciphertext_start != len(ciphertext):
            raise DecryptionError
        seg_ct = self.segment_size + _TAG
        view = memoryview(bytes(ciphertext))
        parts = [
            self._cipher.open(
                index,
                index == rng.segment_count - 1,
                view[(index - rng.first_segment) * seg_ct :][:seg_ct],
            )
            for index in range(rng.first_segment, rng.last_segment + 1)
        ]
        return b"".join(parts)[rng.skip : rng.skip + rng.length]
