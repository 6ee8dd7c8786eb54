"""Loads the public Synthea data through the FHIR API, as a client would
(see docs/fhir.md, "Loading the shared data"): the directory first, then one
transaction per patient, each with a fresh patient key."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from carevault_records.fhir.bundle_convert import collection_as_transaction, conditional_directory_creates

# Plain-POST transactions before the batches of conditional creates that match them.
DIRECTORY_ORDER = ("smart", "fdp")


@dataclass
class LoadedBundle:
    name: str
    patient_key: str
    sent: list[dict[str, Any]]  # the request entries' resources, as sent
    locations: list[str | None]  # "Type/id" per request entry (None when nothing was created)
    status: int
    response: dict[str, Any] = field(default_factory=dict)


def directory_bundles(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "fhir" / "directory").glob("*.json"))
    return sorted(files, key=lambda p: next((i for i, prefix in enumerate(DIRECTORY_ORDER) if p.name.startswith(prefix)), 99))


def patient_bundles(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "fhir" / "dev").glob("*.json"))


def as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    if bundle.get("type") == "collection":
        return collection_as_transaction(bundle)
    return conditional_directory_creates(bundle)


async def post_bundle(fhir: httpx.AsyncClient, bundle: dict[str, Any], key: str | None) -> httpx.Response:
    headers = {"content-type": "application/fhir+json"}
    if key is not None:
        headers["x-patient-key"] = key
    # Two dev bundles name practitioners no directory bundle has: placeholders let them load.
    return await fhir.post("", content=orjson.dumps(bundle), headers=headers, params={"placeholders": "true"})


def locations(response: dict[str, Any]) -> list[str | None]:
    """ "Type/id" of each entry the request created (201); None for the others
    (a conditional create that matched an existing resource, a read...)."""
    out: list[str | None] = []
    for entry in response.get("entry", []):
        answer = entry.get("response", {})
        location = answer.get("location")
        created = str(answer.get("status", "")).startswith("201") and location
        out.append("/".join(location.split("/")[-4:-2]) if created else None)
    return out


async def load_bundle(fhir: httpx.AsyncClient, path: Path, key: str | None) -> LoadedBundle:
    bundle = as_transaction(orjson.loads(path.read_bytes()))
    sent = [copy.deepcopy(e.get("resource") or {}) for e in bundle.get("entry", [])]
    resp = await post_bundle(fhir, bundle, key)
    body = resp.json()
    return LoadedBundle(path.name, key or "", sent, locations(body) if resp.status_code == 200 else [], resp.status_code, body)


def comparable(resource: Any) -> Any:
    """A resource modulo what the server assigns or rewrites: ids, meta, reference targets."""
    if isinstance(resource, dict):
        return {k: ("<ref>" if k == "reference" else comparable(v)) for k, v in resource.items() if k not in ("id", "meta")}
    if isinstance(resource, list):
        return [comparable(v) for v in resource]
    return resource
