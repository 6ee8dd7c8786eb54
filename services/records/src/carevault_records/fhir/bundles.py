"""Transaction and batch Bundles: a processing plan, independent of storage.

``plan_transaction`` checks the Bundle, validates each resource, assigns server
ids to creates, rewrites ``urn:uuid:`` (and other fullUrl) references to
``Type/id`` and collects what needs the database: conditional creates
(``ifNoneExist``) and conditional references (``Practitioner?identifier=...``).
``resolve_plan`` settles those through a :class:`Resolver` the caller provides.
The caller then applies the entries in :meth:`TransactionPlan.processing_order`
(in one database transaction for a ``transaction``, entry by entry for a
``batch``) and builds the answer with :func:`build_response_bundle`.

``plan_transaction`` takes ownership of the Bundle dict: its resources are
rewritten in place (no copy of a large bundle is made).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol
from urllib.parse import parse_qsl

from .compartment import DIRECTORY_TYPES, PATIENT_COMPARTMENT, SUPPORTED_TYPES, require_patient, served_by_api
from .outcome import FhirError, IssueCode, operation_outcome, status_line
from .search import (
    IndexTerm,
    SearchQuery,
    extract_index_terms,
    matches,
    parse_search_query,
)
from .validation import validate_resource

BundleType = Literal["transaction", "batch"]
Method = Literal["DELETE", "POST", "PUT", "GET"]
Interaction = Literal["create", "update", "delete", "read", "vread", "search-type"]
IdFactory = Callable[[], str]

#: Processing order FHIR prescribes for transactions (PATCH is not supported).
METHOD_ORDER: Final[Mapping[str, int]] = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
_METHODS: Final[Mapping[str, Method]] = {"DELETE": "DELETE", "POST": "POST", "PUT": "PUT", "GET": "GET"}
#: Default ceiling on entries per Bundle.
MAX_ENTRIES: Final = 10_000
#: ``meta.tag`` put on placeholder directory resources (see ``resolve_plan``).
PLACEHOLDER_TAG: Final[Mapping[str, str]] = {
    "system": "https://carevault.dev/fhir/CodeSystem/tag",
    "code": "placeholder",
    "display": "Created to satisfy a conditional reference; no content was supplied",
}

_ID = r"[A-Za-z0-9\-.]{1,64}"
_TYPE = r"[A-Z][A-Za-z]{1,63}"
_INSTANCE_URL = re.compile(rf"({_TYPE})/({_ID})(?:/_history/({_ID}))?")
_TYPE_URL = re.compile(rf"({_TYPE})/?")
_SEARCH_URL = re.compile(rf"({_TYPE})\?(.*)", re.DOTALL)
_CONDITIONAL_REF = re.compile(rf"({_TYPE})\?(.+)", re.DOTALL)
_ABSOLUTE_FULL_URL = re.compile(rf"https?://.+/({_TYPE})/({_ID})")
_ETAG = re.compile(r'(?:W/)?"([A-Za-z0-9\-.]{1,64})"')
BUNDLE_URN_PREFIXES: Final = ("urn:uuid:", "urn:oid:")


def new_id() -> str:
    """The default server id factory: a random UUID (a valid FHIR id)."""
    return str(uuid.uuid4())


class FhirTransactionError(FhirError):
    """A Bundle that cannot be processed; for a transaction, nothing is applied."""


class Resolver(Protocol):
    """What the plan needs from storage: ids of the resources matching a search.

    ``find`` is awaited sequentially (never concurrently), so one database
    session may serve it. It may stop after two matches: only 0, 1 or more
    matters.
    """

    async def find(self, resource_type: str, query: SearchQuery) -> Sequence[str]: ...


@dataclass
class PlannedEntry:
    """One Bundle entry, parsed and ready to apply."""

    index: int  #: position in the request Bundle; -1 for a placeholder create
    method: Method
    interaction: Interaction
    resource_type: str
    resource_id: str | None = None  #: assigned for creates; from the URL otherwise
    version_id: str | None = None  #: vread
    full_url: str | None = None
    resource: dict[str, Any] | None = None  #: rewritten, with ``id`` set (create, update)
    #: Owner for patient-compartment creates, updates and patient-scoped
    #: searches; the Patient id for Patient instance URLs. None otherwise (a
    #: read or delete of another compartment type: storage knows the owner).
    patient_id: str | None = None
    if_none_exist: SearchQuery | None = None
    if_match: str | None = None  #: version id from ``request.ifMatch``
    search: SearchQuery | None = None
    search_params: tuple[tuple[str, str], ...] = ()  #: the query pairs of a search entry
    existing_id: str | None = None  #: conditional create matched: nothing to create
    error: FhirError | None = None  #: batch: this entry fails on its own
    placeholder: bool = False
    _sites: list[tuple[dict[str, Any], str]] = field(default_factory=list, repr=False)

    @property
    def noop(self) -> bool:
        """A conditional create that matched an existing resource."""
        return self.existing_id is not None

    @property
    def target_id(self) -> str | None:
        """The id this entry ends up at (the existing one for a no-op)."""
        return self.existing_id or self.resource_id


@dataclass
class ConditionalReference:
    """A ``Type?search`` reference; every site gets ``resolved`` written in."""

    resource_type: str
    query: SearchQuery
    sites: list[tuple[int, dict[str, Any]]] = field(default_factory=list, repr=False)
    resolved: str | None = None


@dataclass
class TransactionPlan:
    bundle_type: BundleType
    entries: list[PlannedEntry]  #: Bundle order, then placeholders
    references: dict[str, str]  #: fullUrl (and equivalents) -> "Type/id"
    conditional_references: dict[SearchQuery, ConditionalReference]
    resolved: bool = False

    def processing_order(self) -> list[PlannedEntry]:
        """Entries to apply, in FHIR order: DELETE, POST, PUT, GET (Bundle order
        within each); failed batch entries are left out, no-ops are kept."""
        live = [e for e in self.entries if e.error is None]
        return sorted(live, key=lambda e: METHOD_ORDER[e.method])

    @property
    def patient_ids(self) -> set[str]:
        """Every patient the plan is known to touch (one key per patient)."""
        return {e.patient_id for e in self.entries if e.patient_id and e.error is None}

    @property
    def is_transaction(self) -> bool:
        return self.bundle_type == "transaction"


# --------------------------------------------------------------------------- planning


def plan_transaction(
    bundle: object,
    *,
    id_factory: IdFactory = new_id,
    validate: bool = True,
    max_entries: int = MAX_ENTRIES,
) -> TransactionPlan:
    """Check a ``transaction`` or ``batch`` Bundle and plan its processing.

    Raises :class:`FhirTransactionError` for a malformed Bundle, and for any
    failing entry of a transaction. Failing batch entries get ``error`` set.
    """
    try:
        bundle_type, raw_entries = _bundle_shape(bundle, max_entries)
    except FhirError as error:
        raise FhirTransactionError(error.outcome, error.status) from None
    transaction = bundle_type == "transaction"
    entries: list[PlannedEntry] = []
    for index, raw in enumerate(raw_entries):
        try:
            entries.append(_plan_entry(index, raw, id_factory, validate))
        except FhirError as error:
            if transaction:
                raise FhirTransactionError(error.outcome, error.status) from None
            entries.append(_failed_entry(index, raw, error))

    plan = TransactionPlan(bundle_type, entries, {}, {})
    if transaction:
        try:
            _map_full_urls(plan)
            _check_identities(plan)
        except FhirError as error:
            raise FhirTransactionError(error.outcome, error.status) from None
    conditional_creates = {e.full_url: e for e in entries if e.full_url and e.if_none_exist is not None}
    for entry in entries:
        if entry.error is not None or entry.resource is None:
            continue
        try:
            _rewrite(plan, entry, conditional_creates)
            if entry.resource_type in PATIENT_COMPARTMENT:
                entry.patient_id = require_patient(entry.resource, f"Bundle.entry[{entry.index}].resource")
        except FhirError as error:
            _entry_failed(plan, entry, error)
    plan.resolved = not plan.conditional_references and not any(e.if_none_exist is not None for e in entries if e.error is None)
    return plan


def _bundle_shape(bundle: object, max_entries: int) -> tuple[BundleType, list[Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _fail("structure", "Expected a Bundle resource", "Bundle")
    bundle_type = bundle.get("type")
    if bundle_type not in ("transaction", "batch"):
        raise _fail("not-supported", "Only Bundle.type transaction or batch can be processed", "Bundle.type")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise _fail("structure", "Bundle.entry must be an array", "Bundle.entry")
    if len(entries) > max_entries:
        raise _fail("too-costly", f"A Bundle may hold at most {max_entries} entries", "Bundle.entry", 413)
    return bundle_type, entries


def _plan_entry(index: int, raw: Any, id_factory: IdFactory, validate: bool) -> PlannedEntry:
    at = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise _fail("structure", "A Bundle entry must be an object", at)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise _fail("required", "A transaction or batch entry needs a request", f"{at}.request")
    method, url = request.get("method"), request.get("url")
    if not isinstance(method, str) or not isinstance(url, str) or not url:
        raise _fail("required", "request.method and request.url are required", f"{at}.request")
    url = url[1:] if url.startswith("/") else url
    unsupported = sorted(set(request) - {"method", "url", "ifNoneExist", "ifMatch", "id", "extension"})
    if unsupported:
        raise _fail("not-supported", f"request.{unsupported[0]} is not supported", f"{at}.request.{unsupported[0]}")
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise _fail("structure", "fullUrl must be a string", f"{at}.fullUrl")
    resource = raw.get("resource")

    if method == "POST":
        match = _TYPE_URL.fullmatch(url)
        if match is None:
            raise _fail("not-supported", "POST entries must have request.url = [type]", f"{at}.request.url")
        resource_type = _supported(match.group(1), f"{at}.request.url")
        _check_resource(resource, resource_type, f"{at}.resource", validate)
        _no_if_match(request, at)
        if_none_exist = request.get("ifNoneExist")
        condition = None if if_none_exist is None else _conditional_query(resource_type, if_none_exist, f"{at}.request.ifNoneExist")
        assert resource is not None
        resource["id"] = id_factory()
        return PlannedEntry(
            index, "POST", "create", resource_type, resource["id"], full_url=full_url, resource=resource, if_none_exist=condition
        )
    if method == "PUT":
        match = _INSTANCE_URL.fullmatch(url)
        if match is None or match.group(3):
            raise _fail(
                "not-supported",
                "PUT entries must have request.url = [type]/[id] (no conditional update)",
                f"{at}.request.url",
            )
        resource_type = _supported(match.group(1), f"{at}.request.url")
        _check_resource(resource, resource_type, f"{at}.resource", validate)
        assert isinstance(resource, dict)
        if resource.get("id") != match.group(2):
            raise _fail("invalid", "resource.id must equal the id in request.url", f"{at}.resource.id")
        return PlannedEntry(
            index,
            "PUT",
            "update",
            resource_type,
            match.group(2),
            full_url=full_url,
            resource=resource,
            if_match=_if_match(request, at),
            patient_id=match.group(2) if resource_type == "Patient" else None,
        )
    if resource is not None:
        raise _fail("invalid", f"A {method} entry carries no resource", f"{at}.resource")
    if method == "DELETE":
        match = _INSTANCE_URL.fullmatch(url)
        if match is None or match.group(3):
            raise _fail(
                "not-supported",
                "DELETE entries must have request.url = [type]/[id] (no conditional delete)",
                f"{at}.request.url",
            )
        resource_type = _supported(match.group(1), f"{at}.request.url")
        _no_if_match(request, at)
        return PlannedEntry(
            index,
            "DELETE",
            "delete",
            resource_type,
            match.group(2),
            full_url=full_url,
            patient_id=match.group(2) if resource_type == "Patient" else None,
        )
    if method == "GET":
        _no_if_match(request, at)
        match = _INSTANCE_URL.fullmatch(url)
        if match is not None:
            resource_type = _supported(match.group(1), f"{at}.request.url")
            return PlannedEntry(
                index,
                "GET",
                "vread" if match.group(3) else "read",
                resource_type,
                match.group(2),
                version_id=match.group(3),
                full_url=full_url,
                patient_id=match.group(2) if resource_type == "Patient" else None,
            )
        search = _SEARCH_URL.fullmatch(url) or _TYPE_URL.fullmatch(url)
        if search is None:
            raise _fail("not-supported", "GET entries may read, vread or search one type", f"{at}.request.url")
        resource_type = _supported(search.group(1), f"{at}.request.url")
        query_string = search.group(2) if search.re is _SEARCH_URL else ""
        query = _parse_query(resource_type, query_string)
        return PlannedEntry(
            index,
            "GET",
            "search-type",
            resource_type,
            full_url=full_url,
            search=query,
            search_params=tuple(parse_qsl(query_string, keep_blank_values=True)),
            patient_id=query.patient_id,
        )
    raise _fail("not-supported", f"request.method {method} is not supported", f"{at}.request.method")


def _failed_entry(index: int, raw: Any, error: FhirError) -> PlannedEntry:
    request = raw.get("request") if isinstance(raw, dict) else None
    method = request.get("method") if isinstance(request, dict) else None
    known: Method = _METHODS.get(method, "GET") if isinstance(method, str) else "GET"
    return PlannedEntry(index, known, "read", "", error=error)


def _supported(resource_type: str, at: str) -> str:
    refusal = served_by_api(resource_type, at.split(".request", 1)[0])
    if refusal is not None:
        # Not a "type unknown here" 404: the type exists, but never inside a Bundle.
        raise _fail("not-supported", refusal, at, 422)
    if resource_type not in SUPPORTED_TYPES:
        raise _fail("not-supported", f"Resource type {resource_type} is not supported by this server", at, 404)
    return resource_type


def _check_resource(resource: Any, resource_type: str, at: str, validate: bool) -> None:
    if resource is None:
        raise _fail("required", "This entry needs a resource", at)
    if validate:
        validate_resource(resource, expected_type=resource_type, expression_prefix=at)
    elif not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        raise _fail("invalid", "resource.resourceType must match request.url", at)


def _if_match(request: Mapping[str, Any], at: str) -> str | None:
    value = request.get("ifMatch")
    if value is None:
        return None
    match = _ETAG.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _fail("value", 'request.ifMatch must be an ETag such as W/"3"', f"{at}.request.ifMatch")
    return match.group(1)


def _no_if_match(request: Mapping[str, Any], at: str) -> None:
    if "ifMatch" in request:
        raise _fail("not-supported", "request.ifMatch only applies to PUT entries", f"{at}.request.ifMatch")


def _parse_query(resource_type: str, query_string: str) -> SearchQuery:
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise _fail("value", "Malformed search query", None) from None
    return parse_search_query(resource_type, pairs)


def conditional_query(resource_type: str, query_string: object, at: str | None = None) -> SearchQuery:
    """Parse an ``ifNoneExist`` / ``If-None-Exist`` search or the query part of a
    conditional reference. Only directory types can be matched this way: patient
    content is indexed under each patient's own key. Raises :class:`FhirError`."""
    return _conditional_query(resource_type, query_string, at)


def _conditional_query(resource_type: str, query_string: object, at: str | None) -> SearchQuery:
    if resource_type not in DIRECTORY_TYPES:
        raise _fail(
            "not-supported",
            f"Conditional creates and references are supported for directory types only "
            f"({', '.join(sorted(DIRECTORY_TYPES))}); {resource_type} content is encrypted per patient",
            at,
        )
    if not isinstance(query_string, str) or not query_string:
        raise _fail("value", "Expected a search query", at)
    try:
        query = _parse_query(resource_type, query_string.removeprefix("?"))
    except FhirError as error:
        raise _fail(error.outcome["issue"][0]["code"], error.outcome["issue"][0]["diagnostics"], at, error.status) from None
    if not query.clauses and query.ids is None:
        raise _fail("value", "A conditional search needs at least one search parameter", at)
    return query


def _map_full_urls(plan: TransactionPlan) -> None:
    """fullUrl -> Type/id for creates and updates (transactions only: batch
    entries are independent, FHIR allows no references between them)."""
    seen: set[str] = set()
    for entry in plan.entries:
        if entry.full_url is None or entry.method not in ("POST", "PUT"):
            continue
        at = f"Bundle.entry[{entry.index}].fullUrl"
        if entry.full_url in seen:
            raise _fail("duplicate", "fullUrl must be unique within a Bundle", at)
        seen.add(entry.full_url)
        target = f"{entry.resource_type}/{entry.resource_id}"
        plan.references[entry.full_url] = target
        absolute = _ABSOLUTE_FULL_URL.fullmatch(entry.full_url)
        if absolute is not None and entry.method == "POST":
            # A relative reference resolves against the fullUrl's base.
            plan.references.setdefault(f"{absolute.group(1)}/{absolute.group(2)}", target)


def _check_identities(plan: TransactionPlan) -> None:
    """FHIR: a transaction may not touch one resource twice in DELETE/PUT."""
    seen: dict[tuple[str, str], int] = {}
    for entry in plan.entries:
        if entry.method in ("DELETE", "PUT") and entry.resource_id is not None:
            key = (entry.resource_type, entry.resource_id)
            if key in seen:
                raise _fail(
                    "duplicate",
                    f"Entries {seen[key]} and {entry.index} change the same resource",
                    f"Bundle.entry[{entry.index}].request.url",
                )
            seen[key] = entry.index


def _rewrite(plan: TransactionPlan, entry: PlannedEntry, by_url: Mapping[str, PlannedEntry]) -> None:
    assert entry.resource is not None
    for site, key, value, path in reference_sites(entry.resource, f"Bundle.entry[{entry.index}].resource"):
        target = plan.references.get(value)
        if target is not None:
            site[key] = target
            conditional = by_url.get(value)
            if conditional is not None:
                conditional._sites.append((site, key))
            continue
        if key != "reference":
            continue  # an unknown urn in Attachment.url (or an extension url): left as is
        if value.startswith(BUNDLE_URN_PREFIXES):
            text = (
                "A batch entry may not refer to another entry; use a transaction"
                if plan.bundle_type == "batch"
                else "This reference matches no fullUrl in the Bundle"
            )
            raise _fail("not-found", text, path)
        match = _CONDITIONAL_REF.fullmatch(value)
        if match is not None:
            query = _conditional_query(match.group(1), match.group(2), path)
            item = plan.conditional_references.get(query)
            if item is None:
                item = plan.conditional_references[query] = ConditionalReference(match.group(1), query)
            item.sites.append((entry.index, site))


def reference_sites(node: Any, path: str) -> Iterator[tuple[dict[str, Any], str, str, str]]:
    """(containing dict, key, value, FHIRPath) of every ``reference`` string and
    every ``url`` string holding a urn (Attachment.url), depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key == "reference" or (key == "url" and value.startswith(BUNDLE_URN_PREFIXES)):
                    yield node, key, value, f"{path}.{key}"
            elif isinstance(value, (dict, list)) and key != "text":
                yield from reference_sites(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, (dict, list)):
                yield from reference_sites(item, f"{path}[{index}]")


# --------------------------------------------------------------------------- resolution


async def resolve_plan(
    plan: TransactionPlan,
    resolver: Resolver,
    *,
    placeholders: bool = False,
    id_factory: IdFactory = new_id,
) -> TransactionPlan:
    """Settle conditional creates and conditional references through ``resolver``.

    Conditional create: no match -> it stays a create; one match -> a no-op
    whose ``existing_id`` is the match, and references to its fullUrl point
    there; several -> 412. Creates in this Bundle with the same condition
    collapse into the first.

    Conditional reference: matches are looked for on the server and among the
    creates of this Bundle. One -> written in; several -> 412; none -> 404,
    unless ``placeholders`` is set, when a placeholder directory resource
    carrying the searched identifier is created (HAPI FHIR's "auto-create
    placeholder reference targets"; off by default, FHIR says fail).
    """
    creates_by_query: dict[SearchQuery, PlannedEntry] = {}
    for entry in plan.entries:
        if entry.error is not None or entry.if_none_exist is None:
            continue
        first = creates_by_query.get(entry.if_none_exist)
        if first is not None:
            _settle_create(entry, first.target_id)
            continue
        try:
            found = _distinct(await resolver.find(entry.resource_type, entry.if_none_exist))
            if len(found) > 1:
                raise _fail(
                    "multiple-matches",
                    "ifNoneExist matches more than one resource",
                    f"Bundle.entry[{entry.index}].request.ifNoneExist",
                    412,
                )
        except FhirError as error:
            _entry_failed(plan, entry, error)
            continue
        creates_by_query[entry.if_none_exist] = entry
        if found:
            _settle_create(entry, found[0])

    bundle_terms: dict[str, list[tuple[PlannedEntry, set[IndexTerm]]]] = {}
    for query, item in plan.conditional_references.items():
        live_sites = [(i, s) for i, s in item.sites if plan.entries[i].error is None]
        if not live_sites:
            continue
        try:
            found = _distinct(await resolver.find(item.resource_type, query))
            found += [i for i in _bundle_matches(plan, bundle_terms, item.resource_type, query) if i not in found]
            if len(found) > 1:
                raise _fail("multiple-matches", "A conditional reference matches more than one resource", None, 412)
            if not found and placeholders and _placeholder_identifier(query) is not None:
                found = [_add_placeholder(plan, bundle_terms, item.resource_type, query, id_factory)]
            if not found:
                raise _fail("not-found", "A conditional reference matches no resource", None, 404)
        except FhirError as error:
            for index, site in live_sites:
                at = _site_path(plan.entries[index], site)
                _entry_failed(plan, plan.entries[index], _relocate(error, at))
            continue
        item.resolved = f"{item.resource_type}/{found[0]}"
        for _, site in live_sites:
            site["reference"] = item.resolved
    plan.resolved = True
    return plan


def creatable_queries(plan: TransactionPlan, *, placeholders: bool) -> list[SearchQuery]:
    """The conditional searches whose finding nothing makes :func:`resolve_plan`
    create a resource: every ``ifNoneExist``, and, with ``placeholders``, every
    conditional reference a placeholder could satisfy. Two Bundles resolving one of
    these at once must not both create (transactions/service.py serializes them)."""
    queries = [e.if_none_exist for e in plan.entries if e.error is None and e.if_none_exist is not None]
    if placeholders:
        queries += [query for query in plan.conditional_references if _placeholder_identifier(query) is not None]
    return list(dict.fromkeys(queries))


def _settle_create(entry: PlannedEntry, existing_id: str | None) -> None:
    entry.existing_id = existing_id
    for site, key in entry._sites:
        site[key] = f"{entry.resource_type}/{existing_id}"


def _distinct(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _bundle_matches(
    plan: TransactionPlan,
    cache: dict[str, list[tuple[PlannedEntry, set[IndexTerm]]]],
    resource_type: str,
    query: SearchQuery,
) -> list[str]:
    """Ids of resources this Bundle creates that satisfy ``query``."""
    if resource_type not in cache:
        cache[resource_type] = [
            (e, set(extract_index_terms(e.resource)))
            for e in plan.entries
            if e.method == "POST" and e.resource_type == resource_type and e.error is None and e.resource is not None and not e.noop
        ]
    return [e.resource_id for e, terms in cache[resource_type] if e.resource_id and matches(query, terms, e.resource_id)]


def _placeholder_identifier(query: SearchQuery) -> tuple[str, str] | None:
    """(system, value) when ``query`` is exactly ``identifier=system|value``."""
    if query.ids is not None or len(query.clauses) != 1:
        return None
    clause = query.clauses[0]
    if clause.param != "identifier" or len(clause.terms) != 1:
        return None
    parts = _split_term(clause.terms[0].value)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def _split_term(value: str) -> list[str]:
    """Split an index term on its unescaped ``|``, undoing the escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _add_placeholder(
    plan: TransactionPlan,
    cache: dict[str, list[tuple[PlannedEntry, set[IndexTerm]]]],
    resource_type: str,
    query: SearchQuery,
    id_factory: IdFactory,
) -> str:
    identifier = _placeholder_identifier(query)
    assert identifier is not None
    resource_id = id_factory()
    resource = {
        "resourceType": resource_type,
        "id": resource_id,
        "meta": {"tag": [dict(PLACEHOLDER_TAG)]},
        "identifier": [{"system": identifier[0], "value": identifier[1]}],
    }
    entry = PlannedEntry(-1, "POST", "create", resource_type, resource_id, resource=resource, placeholder=True)
    plan.entries.append(entry)
    if resource_type in cache:  # else built from plan.entries, placeholders included
        cache[resource_type].append((entry, set(extract_index_terms(resource))))
    return resource_id


def _site_path(entry: PlannedEntry, site: dict[str, Any]) -> str:
    assert entry.resource is not None
    for found, key, _, path in reference_sites(entry.resource, f"Bundle.entry[{entry.index}].resource"):
        if found is site and key == "reference":
            return path
    return f"Bundle.entry[{entry.index}].resource"


def _relocate(error: FhirError, at: str) -> FhirError:
    first = error.outcome["issue"][0]
    return FhirError(operation_outcome(first["severity"], first["code"], first["diagnostics"], at), error.status)


def _entry_failed(plan: TransactionPlan, entry: PlannedEntry, error: FhirError) -> None:
    if plan.is_transaction:
        raise FhirTransactionError(error.outcome, error.status)
    entry.error = error


def _fail(code: IssueCode, diagnostics: str, at: str | None, status: int = 400) -> FhirError:
    return FhirError(operation_outcome("error", code, diagnostics, at), status)


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class EntryResult:
    """What applying one entry gave; the caller fills one per live entry."""

    status: int
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | None = None
    last_modified: str | None = None  #: FHIR instant
    resource: dict[str, Any] | None = None  #: body to return (reads, searches)
    outcome: dict[str, Any] | None = None


def build_response_bundle(
    plan: TransactionPlan,
    results: Mapping[int, EntryResult],
    *,
    base_url: str | None = None,
) -> dict[str, Any]:
    """A ``transaction-response`` / ``batch-response`` Bundle, one entry per
    request entry in request order. ``results`` is keyed by entry index; failed
    batch entries answer with their own error."""
    entries: list[dict[str, Any]] = []
    for entry in plan.entries:
        if entry.index < 0:
            continue  # placeholder: not part of the request
        if entry.error is not None:
            response: dict[str, Any] = {"status": status_line(entry.error.status), "outcome": entry.error.outcome}
            entries.append({"response": response})
            continue
        result = results.get(entry.index)
        if result is None:
            raise ValueError(f"no result for Bundle entry {entry.index}")
        entries.append(_response_entry(result, base_url))
    return {"resourceType": "Bundle", "type": f"{plan.bundle_type}-response", "entry": entries}


def _response_entry(result: EntryResult, base_url: str | None) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status_line(result.status)}
    if result.resource_type and result.resource_id:
        location = f"{result.resource_type}/{result.resource_id}"
        if result.version_id:
            location += f"/_history/{result.version_id}"
        response["location"] = location
    if result.version_id:
        response["etag"] = f'W/"{result.version_id}"'
    if result.last_modified:
        response["lastModified"] = result.last_modified
    if result.outcome is not None:
        response["outcome"] = result.outcome
    item: dict[str, Any] = {}
    if result.resource is not None:
        if base_url and result.resource_type and result.resource_id:
            item["fullUrl"] = f"{base_url.rstrip('/')}/{result.resource_type}/{result.resource_id}"
        item["resource"] = result.resource
    item["response"] = response
    return item


__all__ = [
    "MAX_ENTRIES",
    "PLACEHOLDER_TAG",
    "ConditionalReference",
    "EntryResult",
    "FhirTransactionError",
    "PlannedEntry",
    "Resolver",
    "TransactionPlan",
    "build_response_bundle",
    "conditional_query",
    "creatable_queries",
    "new_id",
    "plan_transaction",
    "reference_sites",
    "resolve_plan",
]
