"""HTTP Range parsing (single ranges; others ignored; 416 when unsatisfiable)."""

from __future__ import annotations

import pytest

from carevault_fileservice.blobs.ranges import ByteRange, parse_range
from carevault_fileservice.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 1)),
        ("bytes=10-19", ByteRange(10, 20)),
        ("bytes=90-", ByteRange(90, 100)),
        ("bytes=90-500", ByteRange(90, 100)),
        ("bytes=-10", ByteRange(90, 100)),
        ("bytes=-500", ByteRange(0, 100)),
        ("BYTES = 5-6", ByteRange(5, 7)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole content
        ("items=0-1", None),
        ("bytes=5-2", None),  # last < first: invalid, ignored
        ("bytes=a-b", None),
        ("bytes=-", None),
        ("bytes=\u00b2-5", None),  # "²" counts as a digit to str.isdigit(), not to int()
        ("bytes=0-\u00b2", None),
        ("bytes=\u0661-5", None),  # Arabic-Indic one: not an HTTP digit
        ("bytes=+1-5", None),
        ("bytes= 1 - 5", None),
    ],
)
def test_parse(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.headers == {"content-range": f"bytes */{size}"}


def test_content_range() -> None:
    assert ByteRange(10, 20).content_range(100) == "bytes 10-19/100"
