"""The ``$everything`` parameters: what a caller may narrow, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carevault_records.export.service import ExportQuery, parse_export_query
from carevault_records.fhir.search import FhirSearchError


def test_type_and_since_are_parsed() -> None:
    query = parse_export_query([("_type", "Observation, Condition"), ("_type", "Patient"), ("_since", "2024-03-05T10:00:00+01:00")])
    assert query.types == {"Observation", "Condition", "Patient"}
    assert query.since == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    assert parse_export_query([("_since", "2024-03")]).since == datetime(2024, 3, 1, tzinfo=UTC)
    # An unencoded "+" in a URL decodes to " ".
    assert parse_export_query([("_since", "2024-03-05T10:00:00 01:00")]).since == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    assert parse_export_query([("_format", "json")]) == ExportQuery()


@pytest.mark.parametrize(
    "params",
    [
        [("_type", "NoSuchType")],
        [("_type", "Observation,Nope")],
        [("_type", ",")],
        [("_since", "yesterday")],
        [("_since", "ge2024")],
        [("_since", "2024-13-01")],
        [("_since", "2024"), ("_since", "2025")],
        [("start", "2024")],
        [("_count", "10")],
    ],
)
def test_bad_or_unsupported_parameters_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(FhirSearchError) as refused:
        parse_export_query(params)
    assert refused.value.status == 400
    assert params[0][0] in refused.value.outcome["issue"][0]["diagnostics"]


def test_lenient_handling_ignores_unsupported_parameters_only() -> None:
    assert parse_export_query([("start", "2024"), ("_count", "1")], lenient=True).ignored == ("start", "_count")
    with pytest.raises(FhirSearchError):
        parse_export_query([("_since", "zz")], lenient=True)


def test_type_narrows_what_the_caller_may_see_and_never_widens_it() -> None:
    asked = ExportQuery(types=frozenset({"Observation", "Condition"}))
    assert asked.limited_to(frozenset({"Observation", "Patient"})) == {"Observation"}
    assert asked.limited_to(None) == {"Observation", "Condition"}
    assert ExportQuery().limited_to(frozenset({"Observation"})) == {"Observation"}
    assert ExportQuery().limited_to(None) is None
