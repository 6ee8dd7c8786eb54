from __future__ import annotations

import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from carevault_records.fhir.compartment import PATIENT_COMPARTMENT, SUPPORTED_TYPES
from carevault_records.fhir.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    FhirSearchError,
    IndexTerm,
    InstantRange,
    extract_index_terms,
    matches,
    parse_search_query,
)
from carevault_records.fhir.search_params import PATIENT_SCOPE_PARAMS, SEARCH_PARAMS
from carevault_records.fhir.validation import model_class

T = IndexTerm


def terms_of(resource: dict[str, Any], param: str) -> set[str]:
    return {t.value for t in extract_index_terms(resource) if t.param == param}


# ------------------------------------------------------------------ definitions


_DATATYPE_MARKERS = {"code": "Code()", "date": "Date()", "dateTime": "DateTime()", "instant": "Instant()"}


@pytest.mark.parametrize(("resource_type", "name"), [(t, n) for t, params in SEARCH_PARAMS.items() for n in params])
def test_every_search_path_exists_with_its_datatype(resource_type: str, name: str) -> None:
    """Guards the table against typos and against R4/R4B differences."""
    for path in SEARCH_PARAMS[resource_type][name].paths:
        cls = model_class(resource_type)
        annotation: Any = None
        for step in path.steps:
            by_alias = {info.alias or n: info for n, info in cls.model_fields.items()}
            assert step in by_alias, f"{resource_type}.{'.'.join(path.steps)}"
            annotation = by_alias[step].annotation
            inner = [a for a in _flatten(annotation) if hasattr(a, "get_model_klass")]
            if inner:
                cls = inner[0].get_model_klass()
        text = str(annotation)
        if path.datatype in _DATATYPE_MARKERS:
            assert _DATATYPE_MARKERS[path.datatype] in text, (path, text)
        elif path.datatype == "boolean":
            assert "bool" in text
        else:
            assert cls.__name__ == path.datatype, (path, cls)


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation] if not args else [x for a in args for x in _flatten(a)]


def test_tables_cover_exactly_the_supported_types() -> None:
    assert set(SEARCH_PARAMS) == SUPPORTED_TYPES
    assert set(PATIENT_SCOPE_PARAMS) == set(PATIENT_COMPARTMENT) - {"Patient"}
    for resource_type, params in SEARCH_PARAMS.items():
        assert not set(params) & PATIENT_SCOPE_PARAMS.get(resource_type, set()), resource_type


# ------------------------------------------------------------------ index terms


def test_token_terms() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}, {"code": "HR"}, {"display": "no code"}], "text": "t"},
        "category": [{"coding": [{"system": "http://x", "code": "a|b\\c"}]}],
        "identifier": [{"system": "urn:ids", "value": "ID-1"}, {"value": "bare"}, {"system": "urn:only-system"}],
    }
    assert terms_of(observation, "code") == {"http://loinc.org|8867-4", "8867-4", "|HR", "HR"}
    assert terms_of(observation, "category") == {"http://x|a\\|b\\\\c", "a\\|b\\\\c"}
    assert terms_of(observation, "identifier") == {"urn:ids|ID-1", "ID-1", "|bare", "bare"}
    assert terms_of(observation, "status") == {"final"}
    patient = {"resourceType": "Patient", "gender": "female", "active": False}
    assert terms_of(patient, "gender") == {"female"}
    assert terms_of(patient, "active") == {"false"}


def test_terms_are_case_sensitive_and_unchanged() -> None:
    condition = {"resourceType": "Condition", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "AbC "}]}}
    assert terms_of(condition, "code") == {"http://snomed.info/sct|AbC ", "AbC "}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019", {"year:2019"}),
        ("2019-05", {"year:2019", "month:2019-05"}),
        ("2019-05-13", {"year:2019", "month:2019-05", "day:2019-05-13"}),
        ("2019-05-13T23:30:00-04:00", {"year:2019", "month:2019-05", "day:2019-05-13"}),  # as written, not UTC
        ("2019-05-13T23:30:00.123Z", {"year:2019", "month:2019-05", "day:2019-05-13"}),
        ("not a date", set()),
    ],
)
def test_date_terms(value: str, expected: set[str]) -> None:
    assert terms_of({"resourceType": "Patient", "birthDate": value}, "birthdate") == expected


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ({"start": "2019-05-13T10:00:00Z", "end": "2019-05-13T11:00:00Z"}, {"year:2019", "month:2019-05", "day:2019-05-13"}),
        ({"start": "2019-05-13T10:00:00Z", "end": "2019-05-14T01:00:00Z"}, {"year:2019", "month:2019-05"}),
        ({"start": "2019-05-31", "end": "2019-06-01"}, {"year:2019"}),
        ({"start": "2019-12-31", "end": "2020-01-01"}, set()),
        ({"start": "2019-05-13"}, {"year:2019", "month:2019-05", "day:2019-05-13"}),
        ({"end": "2019-05-13"}, {"year:2019", "month:2019-05", "day:2019-05-13"}),
        ({"start": "2019-05", "end": "2019-05-20"}, {"year:2019", "month:2019-05"}),
    ],
)
def test_period_terms_contain_the_whole_period(period: dict[str, str], expected: set[str]) -> None:
    assert terms_of({"resourceType": "Encounter", "period": period}, "date") == expected


def test_choice_and_nested_paths() -> None:
    observation = {
        "resourceType": "Observation",
        "effectivePeriod": {"start": "2020-01-02"},
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}],
        "valueCodeableConcept": {"coding": [{"code": "yes"}]},
    }
    assert terms_of(observation, "date") == {"year:2020", "month:2020-01", "day:2020-01-02"}
    assert terms_of(observation, "component-code") == {"http://loinc.org|8480-6", "8480-6"}
    assert terms_of(observation, "value-concept") == {"|yes", "yes"}
    imaging = {"resourceType": "ImagingStudy", "series": [{"modality": {"system": "dcm", "code": "CT"}}, {"modality": {"code": "MR"}}]}
    assert terms_of(imaging, "modality") == {"dcm|CT", "CT", "|MR", "MR"}


def test_extract_rejects_unknown_types_and_sorts() -> None:
    with pytest.raises(ValueError):
        extract_index_terms({"resourceType": "Device"})
    terms = extract_index_terms({"resourceType": "Patient", "gender": "male", "active": True})
    assert terms == sorted(terms) == [T("active", "true"), T("gender", "male")]


# ------------------------------------------------------------------ queries


def q(resource_type: str, *pairs: tuple[str, str], lenient: bool = False) -> Any:
    return parse_search_query(resource_type, list(pairs), lenient=lenient)


def error_of(resource_type: str, *pairs: tuple[str, str]) -> FhirSearchError:
    with pytest.raises(FhirSearchError) as raised:
        q(resource_type, *pairs)
    return raised.value


def test_a_full_query() -> None:
    query = q(
        "Observation",
        ("patient", "Patient/p1"),
        ("code", "http://loinc.org|8867-4,HR"),
        ("date", "2019-05"),
        ("_lastUpdated", "ge2019-05-01"),
        ("_count", "50"),
        ("_sort", "-_lastUpdated"),
        ("_cursor", "abc-123_="),
    )
    assert query.patient_id == "p1"
    assert query.needs_patient_key
    assert [c.terms for c in query.clauses] == [
        (T("code", "http://loinc.org|8867-4"), T("code", "HR")),
        (T("date", "month:2019-05"),),
    ]
    assert query.last_updated == InstantRange(datetime(2019, 5, 1, tzinfo=UTC), None)
    assert (query.count, query.sort, query.cursor) == (50, "-_lastUpdated", "abc-123_=")


@pytest.mark.parametrize(
    ("pairs", "patient"),
    [
        ((("patient", "p1"),), "p1"),
        ((("patient", "Patient/p1"),), "p1"),
        ((("subject", "Patient/p1"),), "p1"),
        ((("subject:Patient", "p1"),), "p1"),
        ((("patient", "p1"), ("subject", "Patient/p1")), "p1"),
        ((), None),
    ],
)
def test_patient_scope(pairs: tuple[tuple[str, str], ...], patient: str | None) -> None:
    assert q("Observation", *pairs).patient_id == patient


def test_defaults_and_bounds() -> None:
    query = q("Observation")
    assert (query.count, query.sort, query.cursor, query.clauses, query.ids) == (DEFAULT_COUNT, "_lastUpdated", None, (), None)
    assert q("Observation", ("_count", "5000")).count == MAX_COUNT
    assert q("Observation", ("_id", "a,b"), ("_id", "b,c")).ids == ("b",)
    assert q("Observation", ("_id", "a"), ("_id", "b")).ids == ()  # nothing in common: nothing matches
    assert q("Patient", ("_id", "p9"), ("gender", "male")).patient_id == "p9"
    assert q("Practitioner", ("identifier", "http://hl7.org/fhir/sid/us-npi|99")).patient_id is None
    assert q("Observation", ("_format", "json")).count == DEFAULT_COUNT
    assert q("Observation", ("_count", "0")).count == 0  # the total only
    assert q("Observation", ("_summary", "count"), ("_total", "accurate")).count == 0
    assert q("Observation", ("_total", "accurate")).total == "accurate"


@pytest.mark.parametrize(
    ("value", "term"),
    [
        ("8867-4", "8867-4"),
        ("http://loinc.org|8867-4", "http://loinc.org|8867-4"),
        ("|HR", "|HR"),
        ("a\\|b|c\\\\d", "a\\|b|c\\\\d"),  # escaped | and \ stay escaped in the term
        ("a\\,b", "a,b"),
        ("x\\$y", "x$y"),
    ],
)
def test_token_query_terms_match_index_terms(value: str, term: str) -> None:
    assert q("Observation", ("patient", "p"), ("code", value)).clauses[0].terms == (T("code", term),)


def test_query_and_index_agree_on_escapes() -> None:
    observation = {"resourceType": "Observation", "code": {"coding": [{"system": "s|1", "code": "a,b\\c"}]}}
    query = q("Observation", ("patient", "p"), ("code", "s\\|1|a\\,b\\\\c"))
    assert matches(query, extract_index_terms(observation))
    assert not matches(q("Observation", ("patient", "p"), ("code", "s|a\\,b\\\\c")), extract_index_terms(observation))


@pytest.mark.parametrize(
    ("pairs", "status", "code", "text"),
    [
        ((("code", "x"),), 400, "required", "needs a patient"),
        ((("patient", "a"), ("patient", "b")), 400, "invalid", "one patient"),
        ((("patient", "a,b"),), 400, "invalid", "one patient"),
        ((("subject:Group", "g"),), 400, "not-supported", ":Patient"),
        ((("patient", "https://x/fhir/Patient/1"),), 400, "value", "local Patient reference"),
        ((("patient", "p"), ("code:text", "x")), 400, "not-supported", "Modifier :text"),
        ((("patient", "p"), ("code:missing", "true")), 400, "not-supported", "Modifier :missing"),
        ((("patient", "p"), ("nonsense", "x")), 400, "not-supported", "Unknown search parameter nonsense"),
        ((("patient", "p"), ("_include", "Observation:patient")), 400, "not-supported", "_include is not supported"),
        ((("patient", "p"), ("subject.name", "x")), 400, "not-supported", "not supported"),
        ((("patient", "p"), ("status", "http://hl7.org/fhir/observation-status|final")), 400, "not-supported", "code alone"),
        ((("patient", "p"), ("code", "http://loinc.org|")), 400, "not-supported", "system alone"),
        ((("patient", "p"), ("code", "a|b|c")), 400, "value", "[system|]code"),
        ((("patient", "p"), ("code", "")), 400, "value", "Empty"),
        ((("patient", "p"), ("code", "a,")), 400, "value", "Empty"),
        ((("patient", "p"), ("code", "a\\")), 400, "value", "lone"),
        ((("patient", "p"), ("date", "ge2019")), 400, "value", "exact dates"),
        ((("patient", "p"), ("date", "2019-05-01T10:00")), 400, "value", "exact dates"),
        ((("patient", "p"), ("date", "2019-02-30")), 400, "value", "not a valid date"),
        ((("patient", "p"), ("date", "2019-13")), 400, "value", "not a valid date"),
        ((("_count", "-1"),), 400, "value", "_count"),
        ((("_total", "exact"),), 400, "value", "_total"),
        ((("_summary", "true"),), 400, "not-supported", "_summary=count"),
        ((("_count", "ten"),), 400, "value", "_count"),
        ((("_count", "5"), ("_count", "6")), 400, "invalid", "only once"),
        ((("_sort", "date"),), 400, "not-supported", "_sort"),
        ((("_cursor", "a b"),), 400, "value", "cursor"),
        ((("_format", "xml"),), 406, "not-supported", "JSON"),
        ((("_id", "a b"),), 400, "value", "_id"),
        ((("_id:not", "a"),), 400, "not-supported", "Modifier"),
        ((("_lastUpdated", "sa2019"),), 400, "not-supported", "prefix sa"),
        ((("_lastUpdated", "2019-02-30"),), 400, "value", "not a valid date"),
        ((("_lastUpdated", "2019-05-01T10:00"),), 400, "value", "_lastUpdated takes"),
        # Past the calendar's ends, once a 500 (OverflowError is no ValueError).
        ((("_lastUpdated", "9999-12-31"),), 400, "value", "not a valid date"),
        ((("_lastUpdated", "le9999-12-31T23:59:59Z"),), 400, "value", "not a valid date"),
        ((("_lastUpdated", "0001-01-01T00:00:00+14:00"),), 400, "value", "not a valid date"),
        ((("_count", "\u00b2"),), 400, "value", "_count"),
    ],
)
def test_query_errors(pairs: tuple[tuple[str, str], ...], status: int, code: str, text: str) -> None:
    error = error_of("Observation", *pairs)
    assert error.status == status
    issue = error.outcome["issue"][0]
    assert issue["code"] == code
    assert text in issue["diagnostics"]


def test_patient_searches_need_one_id_and_values_are_never_echoed() -> None:
    error = error_of("Patient", ("identifier", "urn:mrn|SECRET-123"))
    assert "_id" in error.outcome["issue"][0]["diagnostics"]
    assert "SECRET-123" not in orjson.dumps(error.outcome).decode()
    assert error_of("Device", ("_id", "x")).status == 404


def test_lenient_handling_drops_unknown_parameters_only() -> None:
    query = q("Observation", ("patient", "p"), ("nonsense", "x"), ("code:text", "y"), ("_include", "z"), lenient=True)
    assert query.ignored == ("nonsense", "code:text", "_include")
    with pytest.raises(FhirSearchError):
        q("Observation", ("patient", "p"), ("date", "ge2019"), lenient=True)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2019", _utc(2019, 1, 1), _utc(2020, 1, 1)),
        ("eq2019-12", _utc(2019, 12, 1), _utc(2020, 1, 1)),
        ("2019-05-13", _utc(2019, 5, 13), _utc(2019, 5, 14)),
        ("ge2019-05-13", _utc(2019, 5, 13), None),
        ("gt2019-05-13", _utc(2019, 5, 14), None),
        ("lt2019-05-13", None, _utc(2019, 5, 13)),
        ("le2019-05-13", None, _utc(2019, 5, 14)),
        ("ge2019-05-13T10:00:00+02:00", _utc(2019, 5, 13, 8), None),
        ("ge2019-05-13T10:00:00 02:00", _utc(2019, 5, 13, 8), None),  # "+" decoded to " "
        ("gt2019-05-13T10:00:00Z", _utc(2019, 5, 13, 10, 0, 1), None),
        ("lt2019-05-13T10:00Z", None, _utc(2019, 5, 13, 10)),
        ("le2019-05-13T10:00:00.5Z", None, _utc(2019, 5, 13, 10, 0, 0, 600000)),
    ],
)
def test_last_updated_ranges(value: str, start: datetime | None, end: datetime | None) -> None:
    assert q("Observation", ("_lastUpdated", value)).last_updated == InstantRange(start, end)


def test_last_updated_ranges_intersect() -> None:
    query = q("Observation", ("_lastUpdated", "ge2019-05-01"), ("_lastUpdated", "lt2019-06"))
    assert query.last_updated == InstantRange(_utc(2019, 5, 1), _utc(2019, 6, 1))
    assert query.last_updated.contains(_utc(2019, 5, 31, 23, 59))
    assert not query.last_updated.contains(_utc(2019, 6, 1))


def test_matches() -> None:
    terms = extract_index_terms({"resourceType": "Observation", "status": "final", "effectiveDateTime": "2019-05-13"})
    assert matches(q("Observation", ("patient", "p"), ("status", "final,amended"), ("date", "2019")), terms)
    assert not matches(q("Observation", ("patient", "p"), ("status", "final"), ("date", "2018")), terms)
    assert matches(q("Observation", ("_id", "x,y")), terms, "y")
    assert not matches(q("Observation", ("_id", "x")), terms, "y")
    assert not matches(q("Observation", ("_id", "x"), ("_id", "y")), terms, "y")


@pytest.mark.shared_data
def test_every_index_term_of_the_dev_data_is_found_by_its_query(shared_data: Path) -> None:
    """Indexing and querying normalise alike: each term, written as a search
    value, gives back that very term."""
    checked = 0
    for path in sorted((shared_data / "fhir" / "dev").glob("*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            resource = entry["resource"]
            resource_type = resource["resourceType"]
            scope = [("_id", "p")] if resource_type == "Patient" else [("patient", "p")] if resource_type in PATIENT_COMPARTMENT else []
            for term in extract_index_terms(resource):
                raw = term.value.split(":", 1)[1] if SEARCH_PARAMS[resource_type][term.param].kind == "date" else term.value
                raw = raw.replace(",", "\\,").replace("$", "\\$")
                query = parse_search_query(resource_type, [*scope, (term.param, raw)])
                assert query.clauses[0].terms == (term,), (resource_type, term)
                checked += 1
    assert checked > 50_000
