"""Search: index terms for a resource, and a validated query for a request.

The caller turns every :class:`IndexTerm` into a blind index (an HMAC it owns,
under a key derived from the patient key, or a tenant key for directory types)
and stores or looks it up. This module only produces ``(param, value)`` pairs,
and produces them the same way for indexing and for querying, so equal inputs
give equal terms.

Normalisation (docs/fhir.md has the full rules):

* token, with a system: ``system|code`` and ``code``; without one: ``|code``
  and ``code``. Identifiers: ``system|value`` and ``value`` (``|value``).
  ``code`` and ``boolean`` elements have no system: ``code`` only.
  ``\\`` and ``|`` inside a system, code or value are escaped as ``\\\\`` and
  ``\\|``, so the one bare ``|`` always splits system from code.
  Matching is exact and case-sensitive: FHIR makes token matching
  case-insensitive only where a code system says so, and carevault holds no
  terminology.
* date: ``year:YYYY``, ``month:YYYY-MM``, ``day:YYYY-MM-DD``, from the calendar
  date as written in the resource (no time-zone conversion), for every unit
  that wholly contains the value (FHIR ``eq``): ``2019-05-13T10:00:00+02:00``
  gives day, month and year; ``2019-05`` gives month and year. A Period gives
  the units that contain both its start and its end (its start alone when it
  has no end).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

from .compartment import PATIENT_COMPARTMENT, SUPPORTED_TYPES
from .outcome import FhirError, IssueCode, operation_outcome
from .search_params import PATIENT_SCOPE_PARAMS, SEARCH_PARAMS, ElementPath, SearchParam

DEFAULT_COUNT: Final = 20
MAX_COUNT: Final = 200
MAX_CURSOR_LENGTH: Final = 1024
#: Page cursor parameter. Opaque to this module; the caller issues and checks it.
CURSOR_PARAM: Final = "_cursor"

SortOrder = Literal["_lastUpdated", "-_lastUpdated"]
TotalMode = Literal["none", "estimate", "accurate"]


class IndexTerm(NamedTuple):
    """One searchable fact: a parameter name and a normalised value."""

    param: str
    value: str


@dataclass(frozen=True)
class TermClause:
    """Matches when ANY of ``terms`` is indexed for the resource (FHIR ``,``)."""

    param: str
    terms: tuple[IndexTerm, ...]


@dataclass(frozen=True)
class InstantRange:
    """A half-open interval ``[start, end)`` of UTC instants; None is unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, instant: datetime) -> bool:
        return (self.start is None or instant >= self.start) and (self.end is None or instant < self.end)

    def intersect(self, other: InstantRange) -> InstantRange:
        starts = [s for s in (self.start, other.start) if s is not None]
        ends = [e for e in (self.end, other.end) if e is not None]
        return InstantRange(max(starts) if starts else None, min(ends) if ends else None)


@dataclass(frozen=True)
class SearchQuery:
    """A validated search. All clauses are ANDed; terms inside a clause ORed.

    ``patient_id`` is the one patient whose key the search runs under (None for
    directory types, and for compartment searches over server metadata only).
    """

    resource_type: str
    patient_id: str | None = None
    #: ``_id`` values (ORed); None when ``_id`` is not searched, and empty when
    #: repeated ``_id`` parameters have no value in common (nothing matches).
    ids: tuple[str, ...] | None = None
    clauses: tuple[TermClause, ...] = ()
    last_updated: InstantRange | None = None
    #: Page size; 0 asks for the total only (``_count=0`` or ``_summary=count``).
    count: int = DEFAULT_COUNT
    sort: SortOrder = "_lastUpdated"
    #: ``_total``; None when not asked (the server chooses).
    total: TotalMode | None = None
    cursor: str | None = None
    #: Parameters dropped under ``Prefer: handling=lenient``.
    ignored: tuple[str, ...] = field(default=())

    @property
    def needs_patient_key(self) -> bool:
        return self.resource_type in PATIENT_COMPARTMENT and self.patient_id is not None


class FhirSearchError(FhirError):
    """An invalid or unsupported search; answered 400 with its OperationOutcome."""

    def __init__(self, outcome: dict[str, Any], status: int = 400) -> None:
        super().__init__(outcome, status)


# --------------------------------------------------------------------------- terms


def escape(part: str) -> str:
    """Escape ``\\`` and ``|`` in a system, code or value (FHIR search escaping)."""
    return part.replace("\\", "\\\\").replace("|", "\\|") if ("\\" in part or "|" in part) else part


def token_terms(param: str, system: str | None, code: str) -> tuple[IndexTerm, IndexTerm]:
    """The two terms for a coded value: ``system|code`` (``|code``) and ``code``."""
    code_part = escape(code)
    return IndexTerm(param, f"{escape(system) if system else ''}|{code_part}"), IndexTerm(param, code_part)


def date_terms(param: str, value: str) -> list[IndexTerm]:
    """``year:``/``month:``/``day:`` terms for a FHIR date, dateTime or instant."""
    unit = _date_units(value)
    if unit is None:
        return []
    return [IndexTerm(param, t) for t in unit]


def period_terms(param: str, start: str | None, end: str | None) -> list[IndexTerm]:
    """Terms for the units that contain a whole Period (start alone if no end)."""
    first = _date_units(start) if start else None
    if first is None:
        return date_terms(param, end) if end else []
    if not end:
        return [IndexTerm(param, t) for t in first]
    last = _date_units(end)
    if last is None:
        return [IndexTerm(param, t) for t in first]
    return [IndexTerm(param, t) for t in first if t in last]


_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))?)?)?")


def _date_units(value: str) -> list[str] | None:
    match = _DATE.fullmatch(value)
    if match is None:
        return None
    year, month, day = match.groups()
    units = [f"year:{year}"]
    if month:
        units.append(f"month:{year}-{month}")
        if day:
            units.append(f"day:{year}-{month}-{day}")
    return units


def _is_real_date(value: str) -> bool:
    parts = [int(p) for p in value.split("-")]
    try:
        date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        return False
    return True


def matches(query: SearchQuery, terms: Collection[IndexTerm], resource_id: str | None = None) -> bool:
    """Whether a resource with these index terms satisfies ``query``'s ``_id``
    and term clauses. Patient scope, ``_lastUpdated`` and paging are server
    metadata and are not looked at. For in-memory use (transactions, tests)."""
    if query.ids is not None and resource_id not in query.ids:
        return False
    present = terms if isinstance(terms, (set, frozenset)) else set(terms)
    return all(any(term in present for term in clause.terms) for clause in query.clauses)


def extract_index_terms(resource: Mapping[str, Any]) -> list[IndexTerm]:
    """Every token and date term of a supported resource, sorted, no duplicates.

    Raises ValueError for an unsupported type (validate first).
    """
    resource_type = resource.get("resourceType")
    params = SEARCH_PARAMS.get(str(resource_type))
    if params is None:
        if resource_type in SUPPORTED_TYPES:
            return []
        raise ValueError(f"unsupported resource type {resource_type!r}")
    terms: set[IndexTerm] = set()
    for param in params.values():
        for path in param.paths:
            for value in _values_at(resource, path.steps):
                terms.update(_terms_for(param.name, path.datatype, value))
    return sorted(terms)


def _values_at(node: Any, steps: Sequence[str]) -> Iterator[Any]:
    value = node.get(steps[0]) if isinstance(node, dict) else None
    if value is None:
        return
    items = value if isinstance(value, list) else (value,)
    if len(steps) == 1:
        yield from (item for item in items if item is not None)
    else:
        for item in items:
            yield from _values_at(item, steps[1:])


def _terms_for(param: str, datatype: str, value: Any) -> Iterable[IndexTerm]:
    if datatype == "CodeableConcept":
        codings = value.get("coding") if isinstance(value, dict) else None
        for coding in codings if isinstance(codings, list) else ():
            yield from _coding_terms(param, coding)
    elif datatype == "Coding":
        yield from _coding_terms(param, value)
    elif datatype == "Identifier":
        if isinstance(value, dict) and isinstance(value.get("value"), str):
            system = value.get("system")
            yield from token_terms(param, system if isinstance(system, str) else None, value["value"])
    elif datatype == "code":
        if isinstance(value, str):
            yield IndexTerm(param, escape(value))
    elif datatype == "boolean":
        if isinstance(value, bool):
            yield IndexTerm(param, "true" if value else "false")
    elif datatype == "Period":
        if isinstance(value, dict):
            start, end = value.get("start"), value.get("end")
            yield from period_terms(param, start if isinstance(start, str) else None, end if isinstance(end, str) else None)
    elif isinstance(value, str):  # date, dateTime, instant
        yield from date_terms(param, value)


def _coding_terms(param: str, coding: Any) -> Iterable[IndexTerm]:
    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
        system = coding.get("system")
        yield from token_terms(param, system if isinstance(system, str) else None, coding["code"])


# --------------------------------------------------------------------------- queries

_CONTROL = frozenset({"_count", "_sort", CURSOR_PARAM, "_format", "_total", "_summary"})
_TOTALS: Final[Mapping[str, TotalMode]] = {"none": "none", "estimate": "estimate", "accurate": "accurate"}
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_UNSUPPORTED_RESULT_PARAMS = frozenset(
    {
        "_include",
        "_revinclude",
        "_elements",
        "_contained",
        "_containedType",
        "_has",
        "_text",
        "_content",
        "_list",
        "_query",
        "_filter",
        "_security",
        "_tag",
        "_profile",
        "_source",
    }
)
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CURSOR = re.compile(r"[A-Za-z0-9\-_.~=]+")
_QUERY_DATE = re.compile(r"(eq)?(\d{4}(?:-\d{2}(?:-\d{2})?)?)")
_LAST_UPDATED = re.compile(
    r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+\- ]\d{2}:\d{2}))?)?)?"
)


def lenient_handling(prefer: str | None) -> bool:
    """Whether the client sent ``Prefer: handling=lenient`` (ignore unsupported parameters)."""
    return prefer is not None and "handling=lenient" in prefer


def parse_search_query(
    resource_type: str,
    query_params: Sequence[tuple[str, str]],
    *,
    lenient: bool = False,
) -> SearchQuery:
    """Validate a search on ``resource_type`` (URL-decoded ``(name, value)`` pairs).

    Strict by default, as if the client sent ``Prefer: handling=strict``: an
    unknown or unsupported parameter, modifier, prefix or value is a 400
    :class:`FhirSearchError`. With ``lenient=True`` (``Prefer:
    handling=lenient``) unknown and unsupported parameters are dropped and
    listed in ``SearchQuery.ignored``; malformed values of supported ones are
    still errors.
    """
    if resource_type not in SUPPORTED_TYPES:
        raise query_error("not-supported", f"Resource type {resource_type} is not supported", None, 404)
    params = SEARCH_PARAMS.get(resource_type, {})
    scope_params = PATIENT_SCOPE_PARAMS.get(resource_type, frozenset())
    in_compartment = resource_type in PATIENT_COMPARTMENT
    patient_ids: set[str] = set()
    ids: tuple[str, ...] | None = None
    clauses: list[TermClause] = []
    last_updated: InstantRange | None = None
    count, cursor = DEFAULT_COUNT, None
    sort: SortOrder = "_lastUpdated"
    total: TotalMode | None = None
    summary_count = False
    ignored: list[str] = []
    seen_control: set[str] = set()

    for raw_name, raw_value in query_params:
        name, _, modifier = raw_name.partition(":")
        where = f"{resource_type}?{raw_name}"
        if name in _CONTROL:
            if modifier:
                raise query_error("not-supported", f"{name} takes no modifier", where)
            if name in seen_control:
                raise query_error("invalid", f"{name} may appear only once", where)
            seen_control.add(name)
            if name == "_count":
                count = _parse_count(raw_value, where)
            elif name == "_sort":
                sort = _parse_sort(raw_value, where)
            elif name == CURSOR_PARAM:
                cursor = _parse_cursor(raw_value, where)
            elif name == "_total":
                if raw_value not in _TOTALS:
                    raise query_error("value", "_total is none, estimate or accurate", where)
                total = _TOTALS[raw_value]
            elif name == "_summary":
                if raw_value != "count":
                    raise query_error("not-supported", "Only _summary=count is supported", where)
                summary_count = True
            elif raw_value not in _JSON_FORMATS:
                raise query_error("not-supported", "Only the JSON format is supported", where, 406)
            continue
        if name == "_id":
            _no_modifier(modifier, where)
            values = [p[0] if len(p) == 1 else "" for p in _parse_value(raw_value, where)]
            if not all(_ID.fullmatch(value) for value in values):
                raise query_error("value", "_id values must be FHIR ids", where)
            ids = tuple(dict.fromkeys(values)) if ids is None else tuple(v for v in ids if v in values)
            continue
        if name == "_lastUpdated":
            _no_modifier(modifier, where)
            bound = _parse_last_updated(raw_value, where)
            last_updated = bound if last_updated is None else last_updated.intersect(bound)
            continue
        if name in scope_params:
            patient_ids.add(_parse_patient_ref(name, modifier, raw_value, where))
            continue
        param = params.get(name)
        if param is None or modifier:
            if lenient:
                ignored.append(raw_name)
                continue
            if param is None:
                known = name in _UNSUPPORTED_RESULT_PARAMS or "." in name
                text = (
                    f"Search parameter {name} is not supported"
                    if known or name.startswith("_")
                    else f"Unknown search parameter {name} for {resource_type}"
                )
                raise query_error("not-supported", text, where)
            raise query_error("not-supported", f"Modifier :{modifier} is not supported", where)
        clauses.append(_clause(param, raw_value, where))

    if len(patient_ids) > 1:
        raise query_error("invalid", "A search covers one patient at a time", f"{resource_type}?patient")
    patient_id = patient_ids.pop() if patient_ids else None
    if resource_type == "Patient" and ids is not None and len(ids) == 1:
        patient_id = ids[0]
    if in_compartment and clauses and patient_id is None:
        scope = "_id (one value)" if resource_type == "Patient" else " or ".join(sorted(scope_params))
        raise query_error(
            "required",
            f"Searching {resource_type} content needs a patient: add {scope}. Without one, only _id and _lastUpdated can be searched",
            f"{resource_type}?{next(iter(sorted(scope_params)), '_id')}",
        )
    return SearchQuery(
        resource_type=resource_type,
        patient_id=patient_id,
        ids=ids,
        clauses=tuple(clauses),
        last_updated=last_updated,
        count=0 if summary_count else count,
        sort=sort,
        total=total,
        cursor=cursor,
        ignored=tuple(ignored),
    )


def _clause(param: SearchParam, raw_value: str, where: str) -> TermClause:
    terms: list[IndexTerm] = []
    for parts in _parse_value(raw_value, where):
        if param.kind == "token":
            terms.append(_token_query_term(param, parts, where))
            continue
        match = _QUERY_DATE.fullmatch(parts[0]) if len(parts) == 1 else None
        if match is None:
            raise query_error(
                "value",
                f"{param.name}: only exact dates are supported: YYYY, YYYY-MM or YYYY-MM-DD, with no prefix or eq",
                where,
            )
        units = _date_units(match.group(2))
        if units is None or not _is_real_date(match.group(2)):
            raise query_error("value", f"{param.name}: not a valid date", where)
        terms.append(IndexTerm(param.name, units[-1]))
    return TermClause(param.name, tuple(dict.fromkeys(terms)))


def _token_query_term(param: SearchParam, parts: list[str], where: str) -> IndexTerm:
    if len(parts) == 1:
        return IndexTerm(param.name, escape(parts[0]))
    if len(parts) != 2:
        raise query_error("value", f"{param.name}: a token is [system|]code; escape a literal | as \\|", where)
    system, code = parts
    if not code:
        raise query_error("not-supported", f"{param.name}: searching by system alone is not supported", where)
    if param.is_code_only:
        if system:
            raise query_error("not-supported", f"{param.name} is a code with no system: search by the code alone", where)
        return IndexTerm(param.name, escape(code))
    return token_terms(param.name, system or None, code)[0]


def _parse_value(raw: str, where: str) -> list[list[str]]:
    """Split a search value into OR-alternatives (``,``), each split on ``|``.

    FHIR search escapes (``\\,`` ``\\|`` ``\\$`` ``\\\\``) become literal
    characters.
    """
    alternatives: list[list[str]] = []
    parts: list[str] = []
    current: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char == "\\":
            following = next(chars, None)
            if following is None:
                raise query_error("value", "A search value ends with a lone \\", where)
            current.append(following)
        elif char == ",":
            parts.append("".join(current))
            alternatives.append(parts)
            parts, current = [], []
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    alternatives.append(parts)
    if any(parts == [""] for parts in alternatives):
        raise query_error("value", "Empty search value", where)
    return alternatives


def _parse_patient_ref(name: str, modifier: str, value: str, where: str) -> str:
    if modifier not in ("", "Patient"):
        raise query_error("not-supported", f"{name} only accepts the :Patient type modifier", where)
    if "," in value:
        raise query_error("invalid", "A search covers one patient at a time", where)
    patient_id = value.removeprefix("Patient/") if not modifier else value
    if not _ID.fullmatch(patient_id):
        raise query_error("value", f"{name} must be a local Patient reference: Patient/[id] or [id]", where)
    return patient_id


def _parse_count(value: str, where: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise query_error("value", f"_count must be a whole number (0 for the total only; at most {MAX_COUNT} are returned)", where)
    return min(int(value), MAX_COUNT)


def _parse_sort(value: str, where: str) -> SortOrder:
    if value == "_lastUpdated":
        return "_lastUpdated"
    if value == "-_lastUpdated":
        return "-_lastUpdated"
    raise query_error("not-supported", "Only _sort=_lastUpdated or _sort=-_lastUpdated is supported", where)


def _parse_cursor(value: str, where: str) -> str:
    if not value or len(value) > MAX_CURSOR_LENGTH or not _CURSOR.fullmatch(value):
        raise query_error("value", "Invalid page cursor", where)
    return value


def _parse_last_updated(value: str, where: str) -> InstantRange:
    match = _LAST_UPDATED.fullmatch(value)
    if match is None:
        raise query_error("value", "_lastUpdated takes [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.fff]]+zz:zz]]]", where)
    prefix, year, month, day, hour, minute, second, fraction, zone = match.groups()
    prefix = prefix or "eq"
    if prefix not in ("eq", "gt", "lt", "ge", "le"):
        raise query_error("not-supported", f"_lastUpdated prefix {prefix} is not supported", where)
    try:
        start, end = _instant_bounds(year, month, day, hour, minute, second, fraction, zone)
    except (ValueError, OverflowError):  # no such date, or past the calendar's ends (years 1 to 9999, in UTC)
        raise query_error("value", "_lastUpdated is not a valid date", where) from None
    if prefix == "eq":
        return InstantRange(start, end)
    if prefix == "ge":
        return InstantRange(start, None)
    if prefix == "gt":
        return InstantRange(end, None)
    if prefix == "lt":
        return InstantRange(None, start)
    return InstantRange(None, end)  # le


def parse_instant_start(value: str, where: str) -> datetime:
    """The first instant a date or dateTime of any precision covers (``_since``)."""
    match = _LAST_UPDATED.fullmatch(value)
    if match is None or match.group(1) is not None:
        raise query_error("value", "must be a date or an instant: YYYY[-MM[-DD[Thh:mm[:ss[.fff]]+zz:zz]]]", where)
    try:
        return _instant_bounds(*match.groups()[1:])[0]
    except (ValueError, OverflowError):
        raise query_error("value", "is not a valid date or instant", where) from None


def _instant_bounds(
    year: str,
    month: str | None,
    day: str | None,
    hour: str | None,
    minute: str | None,
    second: str | None,
    fraction: str | None,
    zone: str | None,
) -> tuple[datetime, datetime]:
    """The instants ``[start, end)`` that a date or dateTime of some precision covers.

    Dates without a time are taken in UTC (the server's time zone).
    """
    if hour is None:
        y = int(year)
        if month is None:
            return datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
        m = int(month)
        start = datetime(y, m, int(day) if day else 1, tzinfo=UTC)
        if day:
            return start, start + timedelta(days=1)
        return start, datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    assert zone is not None and month is not None and day is not None and minute is not None
    zone = "+" + zone[1:] if zone.startswith(" ") else zone  # an unencoded "+" decodes to " "
    text = f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{(fraction or '')[:7]}"
    start = datetime.fromisoformat(text + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    if fraction:
        step = timedelta(microseconds=10 ** max(0, 6 - (len(fraction) - 1)))
    else:
        step = timedelta(seconds=1) if second else timedelta(minutes=1)
    return start, start + step


def _no_modifier(modifier: str, where: str) -> None:
    if modifier:
        raise query_error("not-supported", f"Modifier :{modifier} is not supported", where)


def query_error(code: IssueCode, diagnostics: str, where: str | None, status: int = 400) -> FhirSearchError:
    """``where`` ("Observation?code") names the parameter; it goes into the
    diagnostics, not ``expression``, which is for FHIRPath. Values never do."""
    text = f"{diagnostics} ({where})" if where else diagnostics
    return FhirSearchError(operation_outcome("error", code, text), status)


def search_param_names(resource_type: str) -> list[str]:
    """Every search parameter accepted for a type (for the CapabilityStatement)."""
    names = ["_id", "_lastUpdated", *sorted(PATIENT_SCOPE_PARAMS.get(resource_type, ()))]
    return names + sorted(SEARCH_PARAMS.get(resource_type, {}))


__all__ = [
    "CURSOR_PARAM",
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "ElementPath",
    "FhirSearchError",
    "IndexTerm",
    "InstantRange",
    "SearchQuery",
    "SortOrder",
    "TermClause",
    "TotalMode",
    "date_terms",
    "escape",
    "extract_index_terms",
    "lenient_handling",
    "matches",
    "parse_instant_start",
    "parse_search_query",
    "period_terms",
    "query_error",
    "search_param_names",
    "token_terms",
]
