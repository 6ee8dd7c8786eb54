"""Content negotiation: whether FHIR JSON is acceptable, and which representation a
Binary read gets (raw content or the FHIR resource)."""

from __future__ import annotations

import pytest

from carevault_api.fhir.negotiation import Representation, accepts_fhir_json, choose, is_media_type

RAW, RESOURCE = Representation.RAW, Representation.RESOURCE


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        (None, "application/pdf", RAW),
        ("", "application/pdf", RAW),
        ("*/*", "application/pdf", RAW),
        ("application/pdf", "application/pdf", RAW),
        ("application/*", "application/pdf", RAW),
        ("image/*", "image/jpeg", RAW),
        ("text/plain", "text/plain; charset=utf-8", RAW),
        ("application/fhir+json", "application/pdf", RESOURCE),
        ("application/json+fhir", "application/pdf", RESOURCE),
        ("application/fhir+json, */*", "application/pdf", RESOURCE),  # explicit beats a wildcard
        ("application/pdf, application/fhir+json", "application/pdf", RAW),  # a tie goes to the stored type
        ("application/pdf;q=0.5, application/fhir+json", "application/pdf", RESOURCE),
        ("application/fhir+json;q=0, */*", "application/pdf", RAW),
        ("image/png", "application/pdf", None),
        ("application/fhir+json", "application/fhir+json", RAW),  # a stored FHIR JSON file is raw content
    ],
)
def test_choose(accept: str | None, stored: str, expected: Representation | None) -> None:
    assert choose(accept, stored) is expected


def test_format_parameter() -> None:
    assert choose("*/*", "application/pdf", "json") is RESOURCE
    assert choose("*/*", "application/pdf", "application/fhir+json") is RESOURCE
    assert choose("*/*", "application/pdf", "xml") is None


@pytest.mark.parametrize(
    ("accept", "format_param", "acceptable"),
    [
        (None, None, True),
        ("", None, True),
        ("application/fhir+json", None, True),
        ("application/fhir+json; fhirVersion=4.0", None, True),
        ("application/json+fhir", None, True),
        ("application/json", None, True),
        ("*/*", None, True),
        ("application/*", None, True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, True),  # a browser
        ("application/fhir+xml, application/fhir+json;q=0.5", None, True),
        ("application/fhir+xml", None, False),
        ("application/xml, text/xml", None, False),
        ("text/turtle", None, False),
        ("application/fhir+json;q=0", None, False),
        ("application/fhir+json", "xml", False),  # _format overrides Accept
        ("application/fhir+xml", "json", True),
        (None, "application/fhir+json", True),
        (None, "application/fhir+json;fhirVersion=4.0", True),
        (None, "application/fhir+xml", False),
        (None, "ttl", False),
        (None, "html", False),
    ],
)
def test_fhir_json_is_acceptable_unless_the_client_excludes_it(accept: str | None, format_param: str | None, acceptable: bool) -> None:
    assert accepts_fhir_json(accept, format_param) is acceptable


@pytest.mark.parametrize(
    "value",
    [
        "text/plain",
        "application/pdf",
        "image/svg+xml",
        "application/vnd.ms-excel",
        "text/plain; charset=utf-8",
        'text/plain;charset="utf-8"',
        'text/plain; a="b\\"c"',
        "multipart/form-data; boundary=----x",
    ],
)
def test_well_formed_media_types(value: str) -> None:
    assert is_media_type(value)


@pytest.mark.parametrize(
    "value",
    [
        "not a type",
        "text/",
        "/plain",
        "text",
        "text/plain; charset",
        "text/pl ain",
        "x" * 250 + "/plain",
        "text/plain\x00",
        'a/b;c="\x01"',
        'text/plain; a="é"',
    ],
)
def test_malformed_media_types(value: str) -> None:
    assert not is_media_type(value)
