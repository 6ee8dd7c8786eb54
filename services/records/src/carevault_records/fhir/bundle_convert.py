"""Loader conversions: Bundles as found in the wild into Bundles carevault applies.

Neither function is FHIR semantics applied by the API (which applies Bundles as
sent); they are what a loader does before posting, and docs/fhir.md says why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from .bundles import BUNDLE_URN_PREFIXES, FhirTransactionError, reference_sites
from .compartment import DIRECTORY_TYPES
from .outcome import operation_outcome


def conditional_directory_creates(bundle: dict[str, Any]) -> dict[str, Any]:
    """Turn plain POSTs of directory resources into conditional creates.

    Each ``POST`` of an Organization, Location, Practitioner, PractitionerRole
    or Medication with an identifier (system and value) and no ``ifNoneExist``
    gets ``ifNoneExist: identifier=system|value`` (its first such identifier),
    so loading the same directory twice does not duplicate it. A loader's
    choice, not FHIR semantics: the API applies Bundles as sent. In place.
    """
    for entry in bundle.get("entry", []):
        request = entry.get("request") if isinstance(entry, dict) else None
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(resource, dict):
            continue
        if request.get("method") != "POST" or "ifNoneExist" in request:
            continue
        if resource.get("resourceType") not in DIRECTORY_TYPES:
            continue
        query = identifier_query(resource)
        if query is not None:
            request["ifNoneExist"] = query
    return bundle


def identifier_query(resource: Mapping[str, Any]) -> str | None:
    """``identifier=system|value`` (URL-encoded, FHIR-escaped) for the first
    identifier with both, or None."""
    for identifier in resource.get("identifier") or ():
        if isinstance(identifier, dict):
            system, value = identifier.get("system"), identifier.get("value")
            if isinstance(system, str) and isinstance(value, str) and system and value:
                token = f"{_search_escape(system)}|{_search_escape(value)}"
                return urlencode([("identifier", token)])
    return None


def _search_escape(part: str) -> str:
    for char in ("\\", ",", "$", "|"):
        part = part.replace(char, "\\" + char)
    return part


def collection_as_transaction(
    bundle: Mapping[str, Any],
    *,
    conditional_directory: bool = True,
    uuid_factory: Callable[[], uuid.UUID] = uuid.uuid4,
) -> dict[str, Any]:
    """A ``collection`` Bundle as a ``transaction`` that creates every entry.

    Each entry becomes ``POST [type]``. Entries keep a ``urn:uuid:``/``urn:oid:``
    fullUrl; any other (absent, absolute or relative) gets a fresh
    ``urn:uuid:``, and references to it - its old fullUrl, or ``Type/id`` from
    the resource's own id - are rewritten to that urn, so the transaction
    rewrites them again to the server ids. References to resources outside
    the Bundle are left alone. With ``conditional_directory`` (the default),
    directory resources become conditional creates
    (:func:`conditional_directory_creates`). Reuses the resource dicts.
    """
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "collection":
        raise FhirTransactionError(operation_outcome("error", "invalid", "Expected a Bundle of type collection", "Bundle.type"))
    renames: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for index, raw in enumerate(bundle.get("entry") or ()):
        resource = raw.get("resource") if isinstance(raw, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirTransactionError(operation_outcome("error", "required", "Every entry needs a resource", f"Bundle.entry[{index}]"))
        resource_type = resource["resourceType"]
        full_url = raw.get("fullUrl")
        if not (isinstance(full_url, str) and full_url.startswith(BUNDLE_URN_PREFIXES)):
            new_url = f"urn:uuid:{uuid_factory()}"
            if isinstance(full_url, str):
                renames[full_url] = new_url
            if isinstance(resource.get("id"), str):
                renames.setdefault(f"{resource_type}/{resource['id']}", new_url)
            full_url = new_url
        entries.append({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource_type}})
    if renames:
        for entry in entries:
            for site, key, value, _ in reference_sites(entry["resource"], ""):
                if key == "reference" and value in renames:
                    site[key] = renames[value]
    converted: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return conditional_directory_creates(converted) if conditional_directory else converted


__all__ = ["collection_as_transaction", "conditional_directory_creates", "identifier_query"]
