"""Version ids in URLs and the ``_history`` parameters: what cannot exist is a 404,
what is malformed or unsupported a 400, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carevault_common.errors import NotFound
from carevault_records.fhir.search import FhirSearchError
from carevault_records.resources.service import HISTORY_LIMIT, MAX_VERSION_ID, HistoryQuery, parse_history_query, parse_version_id


@pytest.mark.parametrize("text", ["1", "42", str(MAX_VERSION_ID)])
def test_version_ids_that_can_exist(text: str) -> None:
    assert parse_version_id(text) == int(text)


@pytest.mark.parametrize("text", ["0", "", "-1", "+1", "1.0", "abc", str(MAX_VERSION_ID + 1), "9" * 30, "\u00b2", "\u0661", " 1"])
def test_version_ids_that_cannot_exist_are_not_found(text: str) -> None:
    with pytest.raises(NotFound):
        parse_version_id(text)


def test_history_parameters() -> None:
    assert parse_history_query([]) == HistoryQuery(count=HISTORY_LIMIT)
    query = parse_history_query([("_count", "2"), ("_since", "2024-03-05"), ("_cursor", "7"), ("_format", "json")])
    assert (query.count, query.since, query.before) == (2, datetime(2024, 3, 5, tzinfo=UTC), 7)
    assert parse_history_query([("_count", "100000")]).count == HISTORY_LIMIT


@pytest.mark.parametrize(
    "params",
    [
        [("_count", "abc")],
        [("_count", "\u00b2")],
        [("_count", "-1")],
        [("_since", "zz")],
        [("_since", "gt2024")],
        [("_cursor", "0")],
        [("_cursor", "9" * 30)],
        [("_at", "2024")],
        [("_list", "x")],
    ],
)
def test_bad_or_unsupported_history_parameters_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(FhirSearchError) as refused:
        parse_history_query(params)
    assert refused.value.status == 400
    assert params[0][0] in refused.value.outcome["issue"][0]["diagnostics"]


def test_lenient_handling_ignores_unsupported_history_parameters_only() -> None:
    assert parse_history_query([("_at", "2024")], lenient=True).ignored == ("_at",)
    with pytest.raises(FhirSearchError):
        parse_history_query([("_count", "x")], lenient=True)
