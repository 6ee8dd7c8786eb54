"""The CapabilityStatement, built from the definitions it describes.

Types come from :mod:`.compartment`, search parameters from
:mod:`.search_params` and :mod:`.search`, so the statement cannot drift from
what the code accepts.
"""

from __future__ import annotations

from typing import Any, Final

from .compartment import DIRECTORY_TYPES, PATIENT_COMPARTMENT, SUPPORTED_TYPES
from .search import CURSOR_PARAM, DEFAULT_COUNT, MAX_COUNT
from .search_params import PATIENT_SCOPE_PARAMS, SEARCH_PARAMS

FHIR_VERSION: Final = "4.0.1"
FORMATS: Final = ("application/fhir+json", "json")
#: Instance and type interactions offered on every supported type.
TYPE_INTERACTIONS: Final = ("read", "vread", "update", "delete", "history-instance", "create", "search-type")
SYSTEM_INTERACTIONS: Final = ("transaction", "batch")


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
                "resource": [_resource(t, update_create) for t in sorted(SUPPORTED_TYPES)],
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


__all__ = ["FHIR_VERSION", "SYSTEM_INTERACTIONS", "TYPE_INTERACTIONS", "build_capability_statement"]
