"""FHIR resource interactions: create, read, vread, update, delete, history, search.

Every interaction on patient data unlocks that patient's keyring first, which
checks the key against the stored verifier before anything is decrypted.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.errors import NotFound, ProblemError
from carevault_crypto import PatientKey, PatientKeyring
from carevault_records.audit_hints import note_patient
from carevault_records.binaries.content import check_content
from carevault_records.binaries.pending import close_upload
from carevault_records.erasure.service import refuse_if_erased
from carevault_records.errors import PatientKeyRequired, ResourceGone, UnknownPatient, VersionConflict
from carevault_records.fhir.compartment import is_patient_data, patient_of, require_patient
from carevault_records.fhir.search import CURSOR_PARAM, SearchQuery, parse_instant_start, parse_search_query, query_error
from carevault_records.fhir.validation import validate_resource
from carevault_records.keys.repository import KeyMaterial
from carevault_records.keys.service import PatientKeys, RequestKeyrings
from carevault_records.resources import codec, repository
from carevault_records.resources.repository import Head, VersionRow

DIRECTORY_PATIENT = ""  # the patient_id of directory search tokens
HISTORY_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Written:
    """A stored version as the client sees it."""

    resource: dict[str, Any]
    version_id: int
    last_updated: datetime

    @property
    def location(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}/_history/{self.version_id}"

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


def new_id() -> str:
    return str(uuid.uuid4())


# Version ids are stored as 32-bit integers.
MAX_VERSION_ID = 2**31 - 1


def parse_version_id(text: str) -> int:
    """A version id from a URL (``_history/{vid}``); 404 for one that cannot exist."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not 1 <= int(text) <= MAX_VERSION_ID:
        raise NotFound(f"Version ids are whole numbers from 1 to {MAX_VERSION_ID}.")
    return int(text)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """``_history`` parameters: a page of at most ``count`` versions, newest first,
    last updated at or after ``since``, older than ``before`` (the page cursor)."""

    count: int = HISTORY_LIMIT
    since: datetime | None = None
    before: int | None = None
    ignored: tuple[str, ...] = ()


def parse_history_query(params: Sequence[tuple[str, str]], *, lenient: bool = False) -> HistoryQuery:
    """400 for a bad value or, unless ``lenient``, an unsupported parameter (``_at``, ``_list``...)."""
    query = HistoryQuery()
    ignored: list[str] = []
    for name, value in params:
        where = f"_history?{name}"
        if name == "_count":
            if not (value.isascii() and value.isdigit()) or len(value) > 9:
                raise query_error("value", f"_count must be a whole number (at most {HISTORY_LIMIT} are returned)", where)
            query = replace(query, count=min(int(value), HISTORY_LIMIT))
        elif name == "_since":
            query = replace(query, since=parse_instant_start(value, where))
        elif name == CURSOR_PARAM:
            try:
                query = replace(query, before=parse_version_id(value))
            except NotFound:
                raise query_error("value", "Invalid page cursor", where) from None
        elif name in ("_format", "_pretty"):
            continue  # api checked the format
        elif lenient:
            ignored.append(name)
        else:
            raise query_error("not-supported", "Only _count and _since are supported (Prefer: handling=lenient ignores the rest)", where)
    return replace(query, ignored=tuple(ignored))


def parse_etag(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):
        raise ProblemError('If-Match must be a version ETag such as W/"3".', code="invalid-if-match")
    return int(text)


class ResourceService:
    def __init__(self, keys: PatientKeys) -> None:
        self.keys = keys

    def keyrings(self, session: AsyncSession, tenant: str, key: PatientKey | None, scope: frozenset[str] | None) -> RequestKeyrings:
        return RequestKeyrings(self.keys, session, tenant, key, scope)

    @staticmethod
    async def keyring_for(
        keyrings: RequestKeyrings, resource_type: str, patient_id: str | None, material: KeyMaterial | None = None
    ) -> PatientKeyring | None:
        """The keyring that protects ``resource_type`` of ``patient_id``; None for directory data.
        ``material``: that patient's key material, when already read with the record."""
        if not is_patient_data(resource_type):
            return None
        if patient_id is not None:
            note_patient(patient_id)
        if keyrings.key is None:
            raise PatientKeyRequired()
        if patient_id is None:
            raise UnknownPatient()
        return await keyrings.unlock(patient_id, material)

    # -- writes -----------------------------------------------------------------

    async def create(self, keyrings: RequestKeyrings, resource_type: str, resource: Any) -> Written:
        validate_resource(resource, expected_type=resource_type)
        resource = {**resource, "id": new_id()}
        (written,) = await self.store_new(keyrings, [resource], datetime.now(UTC))
        return written

    async def store_new(self, keyrings: RequestKeyrings, resources: list[dict[str, Any]], now: datetime) -> list[Written]:
        """Store validated resources with server-assigned ids as version 1, in one
        statement per table. A Patient among them registers its key first."""
        session, tenant = keyrings.session, keyrings.tenant
        for resource in resources:
            if resource["resourceType"] == "Patient":
                await keyrings.register(resource["id"])
        versions = []
        token_rows: list[tuple[str, str, str, str, str]] = []
        for resource in resources:
            resource_type = resource["resourceType"]
            patient_id = (
                resource["id"] if resource_type == "Patient" else (require_patient(resource) if is_patient_data(resource_type) else None)
            )
            keyring = await self.keyring_for(keyrings, resource_type, patient_id)
            if resource_type == "Binary":
                assert keyring is not None
                await close_upload(session, check_content(keyring, resource).blob_id)
            version, tokens = codec.encode_version(tenant, resource, version_id=1, patient_id=patient_id, keyring=keyring, now=now)
            versions.append(version)
            token_rows += [(resource_type, resource["id"], p, t, patient_id or DIRECTORY_PATIENT) for p, t in tokens]
        await repository.insert_versions(session, tenant, versions)
        await repository.insert_tokens(session, tenant, token_rows)
        return [Written(codec.public(codec.with_server_meta(r, 1, now)), 1, now) for r in resources]

    async def update(self, keyrings: RequestKeyrings, resource_type: str, resource_id: str, resource: Any, if_match: str | None) -> Written:
        session, tenant = keyrings.session, keyrings.tenant
        validate_resource(resource, expected_type=resource_type)
        if resource.get("id") != resource_id:
            raise ProblemError("The resource id must equal the id in the URL.", code="id-mismatch")
        head = await repository.get_head(session, tenant, resource_type, resource_id, for_update=True)
        if head is None:
            await refuse_if_erased(session, tenant, resource_type, resource_id)
            raise NotFound(f"{resource_type}/{resource_id} does not exist; create it with POST (ids are assigned by the server).")
        expected = parse_etag(if_match)
        if expected is not None and expected != head.version_id:
            raise VersionConflict(f"Current version is {head.version_id}.")
        if is_patient_data(resource_type) and resource_type != "Patient" and patient_of(resource) != head.patient_id:
            raise ProblemError("A resource cannot move to another patient.", status=422, code="patient-change")
        keyring = await self.keyring_for(keyrings, resource_type, head.patient_id)
        if resource_type == "Binary":
            assert keyring is not None
            await close_upload(session, check_content(keyring, resource).blob_id)
        now = datetime.now(UTC)
        version_id = head.version_id + 1
        version, tokens = codec.encode_version(
            tenant, resource, version_id=version_id, patient_id=head.patient_id, keyring=keyring, now=now
        )
        await repository.insert_versions(session, tenant, [version])
        await repository.replace_tokens(session, tenant, resource_type, resource_id, tokens, head.patient_id or DIRECTORY_PATIENT)
        return Written(codec.public(codec.with_server_meta(resource, version_id, now)), version_id, now)

    async def delete(self, keyrings: RequestKeyrings, resource_type: str, resource_id: str) -> None:
        session, tenant = keyrings.session, keyrings.tenant
        head = await repository.get_head(session, tenant, resource_type, resource_id, for_update=True)
        if head is None:
            await refuse_if_erased(session, tenant, resource_type, resource_id)
            raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        if head.deleted:
            return  # deleting twice changes nothing (FHIR: idempotent)
        await self.keyring_for(keyrings, resource_type, head.patient_id)
        now = datetime.now(UTC)
        await repository.insert_versions(
            session, tenant, [codec.deletion(resource_type, resource_id, head.version_id + 1, head.patient_id, now)]
        )
        await repository.replace_tokens(session, tenant, resource_type, resource_id, [], head.patient_id or DIRECTORY_PATIENT)

    # -- reads ------------------------------------------------------------------

    @staticmethod
    async def _head(keyrings: RequestKeyrings, resource_type: str, resource_id: str) -> Head:
        head = await repository.get_head(keyrings.session, keyrings.tenant, resource_type, resource_id)
        if head is None:
            await refuse_if_erased(keyrings.session, keyrings.tenant, resource_type, resource_id)
            raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        return head

    async def read(self, keyrings: RequestKeyrings, resource_type: str, resource_id: str) -> Written:
        current = await repository.get_current(keyrings.session, keyrings.tenant, resource_type, resource_id)
        if current is None:
            await refuse_if_erased(keyrings.session, keyrings.tenant, resource_type, resource_id)
            raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        if current.head.deleted:
            raise ResourceGone(f"{resource_type}/{resource_id} was deleted.")
        keyring = await self.keyring_for(keyrings, resource_type, current.head.patient_id, current.key)
        stored = current.version
        return Written(codec.decode_version(keyrings.tenant, stored, keyring), stored.version_id, stored.last_updated)

    async def vread(self, keyrings: RequestKeyrings, resource_type: str, resource_id: str, version_id: int) -> Written:
        head = await self._head(keyrings, resource_type, resource_id)
        keyring = await self.keyring_for(keyrings, resource_type, head.patient_id)
        stored = await repository.get_version(keyrings.session, keyrings.tenant, resource_type, resource_id, version_id)
        if stored is None:
            raise NotFound(f"{resource_type}/{resource_id} has no version {version_id}.")
        if stored.deleted:
            raise ResourceGone(f"Version {version_id} of {resource_type}/{resource_id} is a deletion.")
        return Written(codec.decode_version(keyrings.tenant, stored, keyring), stored.version_id, stored.last_updated)

    async def history(
        self,
        keyrings: RequestKeyrings,
        resource_type: str,
        resource_id: str,
        base: str,
        params: Sequence[tuple[str, str]],
        query: HistoryQuery,
    ) -> dict[str, Any]:
        session, tenant = keyrings.session, keyrings.tenant
        head = await self._head(keyrings, resource_type, resource_id)
        keyring = await self.keyring_for(keyrings, resource_type, head.patient_id)
        total = await repository.count_versions(session, tenant, resource_type, resource_id, query.since)
        versions = await repository.history(session, tenant, resource_type, resource_id, query.count + 1, query.since, query.before)
        page, more = versions[: query.count], len(versions) > query.count
        entries = [_history_entry(tenant, v, keyring, base) for v in page]
        url = f"{base}/{resource_type}/{resource_id}/_history"
        cursor = str(page[-1].version_id) if more else None
        return _paged_bundle("history", entries, url, params, cursor, query.ignored, total)

    async def search(
        self, keyrings: RequestKeyrings, resource_type: str, params: list[tuple[str, str]], base: str, *, lenient: bool
    ) -> dict[str, Any]:
        session, tenant = keyrings.session, keyrings.tenant
        query = parse_search_query(resource_type, params, lenient=lenient)
        patient_data = is_patient_data(resource_type)
        keyring: PatientKeyring | None = None
        token_patient = DIRECTORY_PATIENT
        if patient_data and query.patient_id is not None:
            keyring = await self.keyring_for(keyrings, resource_type, query.patient_id)
            token_patient = query.patient_id
        ids: set[str] | None = set(query.ids) if query.ids else None
        if query.clauses:
            required = [
                (clause.param, [keyring.blind_index(t.param, t.value) if keyring else t.value for t in clause.terms])
                for clause in query.clauses
            ]
            found = await repository.find_by_tokens(session, tenant, resource_type, token_patient, required)
            ids = found if ids is None else ids & (found or set())
        descending = query.sort.startswith("-")
        heads = await repository.list_heads(
            session,
            tenant,
            resource_type,
            patient_id=query.patient_id if patient_data and resource_type != "Patient" else None,
            ids=ids,
            updated_bounds=_bounds(query),
            descending=descending,
            after=_decode_cursor(query.cursor),
            limit=query.count + 1,
        )
        page, more = heads[: query.count], len(heads) > query.count
        if patient_data and keyring is None:
            # No patient key: server metadata only, never content, and only for a
            # request api authorized across patients.
            keyrings.admit(None)
            entries = [_metadata_entry(h, base) for h in page]
        else:
            stored = await repository.get_current_versions(session, tenant, [(h.resource_type, h.id) for h in page])
            entries = [_search_entry(codec.decode_version(tenant, s, keyring), base) for s in stored]
        cursor = _encode_cursor(page[-1]) if more else None
        return _paged_bundle("searchset", entries, f"{base}/{resource_type}", params, cursor, query.ignored)


def _paged_bundle(
    bundle_type: str,
    entries: list[dict[str, Any]],
    url: str,
    params: Sequence[tuple[str, str]],
    cursor: str | None,
    ignored: tuple[str, ...],
    total: int | None = None,
) -> dict[str, Any]:
    """A page of a searchset or history: its self link, a next link when there is a
    next page (``cursor``), and the parameters lenient handling ignored, as a tag."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": bundle_type}
    if total is not None:
        bundle["total"] = total
    bundle["entry"] = entries
    self_params = [(k, v) for k, v in params if k != CURSOR_PARAM]
    links = [{"relation": "self", "url": f"{url}?{urlencode(self_params)}" if self_params else url}]
    if cursor is not None:
        links.append({"relation": "next", "url": f"{url}?{urlencode([*self_params, (CURSOR_PARAM, cursor)])}"})
    bundle["link"] = links
    if ignored:
        bundle["meta"] = {"tag": [{"system": "https://carevault.dev/search", "code": "ignored-params", "display": ",".join(ignored)}]}
    return bundle


def _bounds(query: SearchQuery) -> list[tuple[str, datetime]]:
    bounds: list[tuple[str, datetime]] = []
    if query.last_updated is not None:
        if query.last_updated.start is not None:
            bounds.append(("ge", query.last_updated.start))
        if query.last_updated.end is not None:
            bounds.append(("lt", query.last_updated.end))
    return bounds


def _encode_cursor(head: Head) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([head.last_updated.isoformat(), head.id])).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        stamp, resource_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(stamp), str(resource_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ProblemError("The page cursor is not valid.", code="invalid-cursor") from None


def _search_entry(resource: dict[str, Any], base: str) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource, "search": {"mode": "match"}}


def _metadata_entry(head: Head, base: str) -> dict[str, Any]:
    meta = {"versionId": str(head.version_id), "lastUpdated": head.last_updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    resource = {"resourceType": head.resource_type, "id": head.id, "meta": meta}
    return _search_entry(resource, base)


def _history_entry(tenant: str, version: VersionRow, keyring: PatientKeyring | None, base: str) -> dict[str, Any]:
    url = f"{version.resource_type}/{version.id}"
    stamp = version.last_updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if version.deleted:
        return {
            "fullUrl": f"{base}/{url}",
            "request": {"method": "DELETE", "url": url},
            "response": {"status": "204", "lastModified": stamp},
        }
    resource = codec.decode_version(tenant, version, keyring)
    method = "POST" if version.version_id == 1 else "PUT"
    return {
        "fullUrl": f"{base}/{url}",
        "resource": resource,
        "request": {"method": method, "url": url if method == "PUT" else version.resource_type},
        "response": {"status": "201" if method == "POST" else "200", "etag": f'W/"{version.version_id}"', "lastModified": stamp},
    }
