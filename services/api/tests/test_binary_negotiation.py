"""Which representation a Binary read gets (raw content or the FHIR resource)."""

from __future__ import annotations

import pytest

from carevault_api.binaries.negotiation import Representation, choose

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
