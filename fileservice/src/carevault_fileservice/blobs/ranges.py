"""HTTP ``Range: bytes=...`` (RFC 9110 §14), single ranges only.

A multi-range or malformed header is ignored (the whole content is sent, as
RFC 9110 allows); a well-formed range outside the content is 416.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carevault_fileservice.errors import RangeNotSatisfiable


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


# first-last, first- or -suffix, in ASCII digits.
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(f"The content is {size} bytes long.", headers={"content-range": f"bytes */{size}"})


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range asked for, None to send everything; raises 416 if unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _SPEC.fullmatch(spec.strip())
    if match is None or not (match[1] or match[2]):
        return None
    first, last = match[1], match[2]
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None  # last < first: invalid, ignored
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, min(end, size))
