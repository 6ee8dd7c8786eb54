"""The scan after the suite (tests/conftest.py) finds what it looks for: a patient
key in any of its forms, or a canary, at any position of a haystack, including its
first and last bytes; and nothing that is not there."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.support import find_file_key, find_needles, secret_forms


@pytest.mark.parametrize("position", [0, 1, 7, 8, 9, 4095, "end"])
def test_every_form_of_a_key_is_found_at_any_offset(position: int | str) -> None:
    key = secrets.token_bytes(32)
    decoys = [secrets.token_bytes(32) for _ in range(50)]
    for form in secret_forms(key):
        background = bytearray(os.urandom(8192 + 3))
        start = len(background) - len(form) if position == "end" else int(position)
        background[start : start + len(form)] = form
        needles = [f for k in [key, *decoys] for f in secret_forms(k)]
        assert find_needles(bytes(background), needles) == {form}


def test_short_needles_and_absent_ones() -> None:
    haystack = b"a log line with 0612345678 in it" + os.urandom(1000)
    assert find_needles(haystack, [b"0612345678", b"absent", b"x" * 40]) == {b"0612345678"}
    assert find_needles(b"", [b"anything at all here"]) == set()
    assert find_needles(b"tiny", [b"a needle longer than the haystack"]) == set()


def test_a_file_key_is_found_in_a_log_line_and_not_in_a_certificate() -> None:
    key = b"AQ" + b"x7_-" * 10 + b"Qk"  # 44 characters of base64url, the transport form
    assert find_file_key(b'{"msg": "put", "file_key": "' + key + b'"}') == key
    assert find_file_key(b"GET /blobs/" + key + b" 200") == key
    # A PEM line that starts with such a run (here after "+", as standard base64 has it):
    # DER of the mesh's own certificates, found in a state directory once by chance.
    certificate = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n" + key + b"+EwYHKoZIzj0CAQ\n-----END CERTIFICATE-----\n"
    assert find_file_key(certificate) is None
    assert find_file_key(certificate + b"later: " + key + b"\n") == key
