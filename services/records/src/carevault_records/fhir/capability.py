"""The CapabilityStatement, built from the definitions it describes.

Types come from :mod:`.compartment`, search parameters from
:mod:`.search_params` and :mod:`.search`, so the statement cannot drift from
what the code accepts. The FHIR surface is served by two services: records (the
generic type routes, transactions, ``$everything``, ``$rotate-key``) and api,
which serves some routes itself before its catch-all forwards the rest to
records (``AuditEvent``, ``Consent``, Binary content, ``$erase``). Those are
declared here too (:data:`API_SERVED_TYPES`, :data:`OPERATIONS`), and
tests/e2e/test_capability_routes.py compares the statement with the routes both
apps really have, so a route added or removed without this module following fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .compartment import DIRECTORY_TYPES, PATIENT_COMPARTMENT, SUPPORTED_TYPES
from .search import CURSOR_PARAM, DEFAULT_COUNT, MAX_COUNT
from .search_params import PATIENT_SCOPE_PARAMS, SEARCH_PARAMS

FHIR_VERSION: Final = "4.0.1"
FORMATS: Final = ("application/fhir+json", "json")
#: Instance and type interactions offered on every supported type.
TYPE_INTERACTIONS: Final = ("read", "vread", "update", "delete", "history-instance", "create", "search-type")
SYSTEM_INTERACTIONS: Final = ("transaction", "batch")


@dataclass(frozen=True)
class ApiServedType:
    """A type whose FHIR routes api serves from its own storage; records holds none."""

    interactions: tuple[str, ...]
    #: (name, FHIR search parameter type, documentation)
    search_params: tuple[tuple[str, str, str], ...]
    documentation: str
    #: "versioned": meta.versionId is kept and vread answers for the current version
    #: only (readHistory false); "no-version": no versions at all.
    versioning: str = "no-version"


#: Types api answers itself (services/api: audit/router.py, consents/router.py); records
#: refuses to store them (compartment.API_SERVED_TYPES says why, and where to go instead).
API_SERVED_TYPES: Final[Mapping[str, ApiServedType]] = {
    "AuditEvent": ApiServedType(
        ("read", "search-type"),
        (
            ("agent", "token", "Who acted: the principal id"),
            ("date", "date", "When the event was recorded (ge, gt, le, lt, eq)"),
            ("entity", "reference", "What was reached: [type]/[id] (Patient/[id] for a patient)"),
            ("outcome", "token", "0 success, 4 the client's failure, 8 the server's"),
            ("patient", "reference", "Whose data: the patient's own view with X-Patient-Key (then only date, _count)"),
            ("subtype", "token", "The carevault event name (docs/audit.md)"),
        ),
        "The audit trail of the caller's tenant, read-only: the auditor role (second factor), or the patient with "
        "their key (patient= and X-Patient-Key) for who accessed their records and why. Every query is itself audited.",
    ),
    "Consent": ApiServedType(
        ("create", "read", "vread", "update", "delete", "search-type"),
        (("patient", "reference", "The patient who granted the consent"),),
        "A patient's grant of access to a practitioner or a clinic client: resource types, read and/or write, purpose, "
        "legal basis, expiry. Granted by the patient (or a representative); an update only revokes (status inactive), "
        "as does delete. Enforced by api on every request for that patient's data. Only the current version is "
        "kept: vread answers for it (the Location of a create), not for older ones; no history. Refused inside "
        "transaction and batch Bundles.",
        versioning="versioned",
    ),
}


@dataclass(frozen=True)
class Operation:
    resource_type: str
    name: str
    definition: str
    documentation: str


#: Operations, by type ($name in the URL).
OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "Patient",
        "everything",
        "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        "GET Patient/[id]/$everything with X-Patient-Key: every current record of the patient (GDPR Art. 15/20) as a searchset "
        "Bundle, streamed, with the directory resources they reference; loadable again as a transaction. Parameters: _type, "
        "_since (start, end and _count are not supported). A caller acting "
        "under a consent gets only the resource types that consent (and the token's scopes) cover.",
    ),
    Operation(
        "Patient",
        "rotate-key",
        "https://carevault.dev/fhir/OperationDefinition/Patient-rotate-key",
        "POST Patient/[id]/$rotate-key with the old key in X-Patient-Key and a Parameters body (newKey): rewraps the "
        "patient's data keys, re-escrows the new key and replaces the verifier, atomically; the old key is refused afterwards.",
    ),
    Operation(
        "Patient",
        "erase",
        "https://carevault.dev/fhir/OperationDefinition/Patient-erase",
        "POST Patient/[id]/$erase (GDPR Art. 17), by the tenant's data-protection role with a second factor: deletes "
        "ciphertexts, data keys, verifier, blind indexes, files and escrow; leaves an audit tombstone without content.",
    ),
)


def build_capability_statement(
    *,
    software_name: str = "carevault",
    software_version: str = "0.1.0",
    date: str = "2026-01-01",
    base_url: str | None = None,
    update_create: bool = False,
) -> dict[str, Any]:
    """The server's CapabilityStatement (``GET /fhir/metadata``).

    ``update_create`` says whether PUT to an unknown id creates the resource (a
    storage choice this module does not make).
    """
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "carevault",
        "kind": "instance",
        "software": {"name": software_name, "version": software_version},
        "implementation": {"description": "carevault FHIR R4 API: patient data encrypted under the patient's key"},
        "fhirVersion": FHIR_VERSION,
        "format": list(FORMATS),
        "rest": [
            {
                "mode": "server",
                "documentation": _REST_DOCUMENTATION,
                "resource": [_resource(t, update_create) for t in sorted(SUPPORTED_TYPES | API_SERVED_TYPES.keys())],
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }
    if base_url:
        statement["implementation"]["url"] = base_url
    return statement


_REST_DOCUMENTATION: Final = (
    "Patient-compartment resources are encrypted under the patient's key (X-Patient-Key) and searched through "
    "blind indexes within one patient (patient= or subject=; _id for Patient): exact token match (system|code or "
    "code) and exact date match (YYYY, YYYY-MM or YYYY-MM-DD, no prefix but eq). Without a patient only _id and "
    "_lastUpdated (server metadata) can be searched, and only ids and meta are returned. "
    f"_count defaults to {DEFAULT_COUNT}, at most {MAX_COUNT} (0 or _summary=count: the total only); _total; "
    "_sort=_lastUpdated or -_lastUpdated; pages follow "
    f"the next link ({CURSOR_PARAM}). Unknown parameters are refused unless Prefer: handling=lenient. "
    "Directory resources (" + ", ".join(sorted(DIRECTORY_TYPES)) + ") are tenant data, searchable without a patient."
)


#: The api's limit for base64 ``data`` in a JSON Binary (docs/api.md).
BINARY_JSON_LIMIT_TEXT: Final = "1 MiB"
BINARY_DOCUMENTATION: Final = (
    "File content of any media type. Create with POST (raw body with its own Content-Type, or a Binary resource with "
    "base64 data), X-Security-Context: Patient/{id} and X-Patient-Key; the content is encrypted as a stream under a "
    "per-file key wrapped by the patient's key. Read returns the raw bytes when Accept matches the stored type or is */* "
    f"(HTTP Range supported), or the Binary resource with base64 data for application/fhir+json up to {BINARY_JSON_LIMIT_TEXT} (406 above)."
)


def _resource(resource_type: str, update_create: bool) -> dict[str, Any]:
    served = API_SERVED_TYPES.get(resource_type)
    entry = _api_served(resource_type, served) if served is not None else _records_type(resource_type, update_create)
    operations = [
        {"name": o.name, "definition": o.definition, "documentation": o.documentation}
        for o in OPERATIONS
        if o.resource_type == resource_type
    ]
    if operations:
        entry["operation"] = operations
    return entry


def _api_served(resource_type: str, served: ApiServedType) -> dict[str, Any]:
    return {
        "type": resource_type,
        "documentation": served.documentation,
        "interaction": [{"code": code} for code in served.interactions],
        "versioning": served.versioning,
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": [{"name": n, "type": t, "documentation": d} for n, t, d in served.search_params],
    }


def _records_type(resource_type: str, update_create: bool) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "_id", "type": "token", "documentation": "Logical id of this artifact"},
        {"name": "_lastUpdated", "type": "date", "documentation": "ge, gt, le, lt and eq ranges on server metadata"},
    ]
    for name in sorted(PATIENT_SCOPE_PARAMS.get(resource_type, ())):
        params.append({"name": name, "type": "reference", "documentation": "The one patient searched: Patient/[id] or [id]"})
    for name, param in sorted(SEARCH_PARAMS.get(resource_type, {}).items()):
        params.append({"name": name, "type": param.kind, "documentation": param.documentation})
    entry: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": update_create,
        "conditionalCreate": resource_type in DIRECTORY_TYPES,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "referencePolicy": ["literal", "local"],
        "searchParam": params,
    }
    if resource_type == "Binary":
        entry["documentation"] = BINARY_DOCUMENTATION
    elif resource_type in PATIENT_COMPARTMENT:
        entry["documentation"] = "Patient data: encrypted under the patient's key; X-Patient-Key required"
    else:
        entry["documentation"] = "Tenant directory data: no patient key"
    return entry


__all__ = [
    "API_SERVED_TYPES",
    "FHIR_VERSION",
    "OPERATIONS",
    "SYSTEM_INTERACTIONS",
    "TYPE_INTERACTIONS",
    "ApiServedType",
    "Operation",
    "build_capability_statement",
]
