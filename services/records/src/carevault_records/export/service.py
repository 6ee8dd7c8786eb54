"""``Patient/{id}/$everything`` (GDPR Art. 15 and 20): every current record of one
patient, streamed as a FHIR searchset Bundle in bounded memory.

The Patient comes first (mode ``match``), then the patient's records in (type, id)
order, read a page at a time and written as they are decrypted, then the
directory resources they reference (Practitioner, Organization...: mode
``include``), so that the Bundle loads as a transaction into another tenant or
another FHIR server (docs/audit.md shows how). Binary resources of the patient,
when they exist, are records like the others: the Bundle carries them as
references to their content, not the file bytes. A caller acting under a consent
limited to some resource types gets only those (api sends the list; the directory
resources included are those the exported records reference).

The operation's ``_type`` (types to export, comma-separated, repeatable) and ``_since``
(records updated at or after that instant; the directory resources they reference
are included whatever their age) are supported. ``start`` and ``end`` (care dates,
inside the encrypted content) and ``_count`` (the Bundle is streamed whole, not paged)
are not: like any unknown parameter they are a 400, or ignored under ``Prefer:
handling=lenient``, as a search does.

The key is checked before the first byte (a wrong key is a 403, not a truncated
body). The body is read in one transaction of its own; on PostgreSQL it is
REPEATABLE READ, so the Bundle is one consistent snapshot. An integrity failure
halfway cuts the stream: the client gets invalid JSON, never a partial Bundle that
parses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carevault_common.db import session_scope
from carevault_crypto import PatientKeyring
from carevault_records.fhir.bundles import reference_sites
from carevault_records.fhir.compartment import SUPPORTED_TYPES, is_directory
from carevault_records.fhir.search import parse_instant_start, query_error
from carevault_records.keys.service import RequestKeyrings
from carevault_records.resources import codec, repository
from carevault_records.resources.service import ResourceService

logger = logging.getLogger("carevault.records.export")

PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class ExportQuery:
    #: ``_type``: only these types (the Patient only if named); None: every type.
    types: frozenset[str] | None = None
    #: ``_since``: only records last updated at or after this instant.
    since: datetime | None = None
    #: Parameters dropped under ``Prefer: handling=lenient``.
    ignored: tuple[str, ...] = ()

    def limited_to(self, allowed: frozenset[str] | None) -> frozenset[str] | None:
        """The types to export when the caller may see only ``allowed`` (api's consent check)."""
        if allowed is None:
            return self.types
        return allowed if self.types is None else self.types & allowed


_FORMAT_PARAMS = frozenset({"_format", "_pretty"})  # api checked the format


def parse_export_query(params: Sequence[tuple[str, str]], *, lenient: bool = False) -> ExportQuery:
    """The ``$everything`` parameters (URL-decoded pairs); 400 for a bad or, unless
    ``lenient``, unsupported one."""
    types: set[str] | None = None
    since: datetime | None = None
    ignored: list[str] = []
    for name, value in params:
        where = f"Patient/$everything?{name}"
        if name == "_type":
            named = {t.strip() for t in value.split(",") if t.strip()}
            if not named or not named <= SUPPORTED_TYPES:  # the names are not echoed: a client's values never are
                raise query_error("value", "_type must name resource types this server supports (see the CapabilityStatement)", where)
            types = named if types is None else types | named
        elif name == "_since":
            if since is not None:
                raise query_error("value", "_since may be given once", where)
            since = parse_instant_start(value, where)
        elif name in _FORMAT_PARAMS:
            continue
        elif lenient:
            ignored.append(name)
        else:
            raise query_error("not-supported", "Only _type and _since are supported (Prefer: handling=lenient ignores the rest)", where)
    return ExportQuery(frozenset(types) if types is not None else None, since, tuple(ignored))


async def open_export(resources: ResourceService, keyrings: RequestKeyrings, patient_id: str) -> PatientKeyring:
    """Check that the patient exists (404, 410) and the key (401, 403), as a read of
    the Patient does, before anything is streamed."""
    await resources.read(keyrings, "Patient", patient_id)
    return await keyrings.unlock(patient_id)


async def everything(
    sessions: async_sessionmaker[AsyncSession],
    tenant: str,
    patient_id: str,
    keyring: PatientKeyring,
    base: str,
    types: frozenset[str] | None = None,
    since: datetime | None = None,
) -> AsyncIterator[bytes]:
    """``types``: only records of these types (the Patient included only if named);
    None: every type. ``since``: only records last updated at or after it. Records
    left out are skipped before decryption."""
    async with session_scope(sessions) as session:
        assert session.bind is not None
        if session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        yield b'{"resourceType":"Bundle","type":"searchset","timestamp":"' + stamp.encode() + b'","entry":['
        count, referenced = 0, set[tuple[str, str]]()

        def entry(resource: dict[str, Any], mode: str) -> bytes:
            body = {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource, "search": {"mode": mode}}
            return (b"," if count else b"") + orjson.dumps(body)

        patient = await repository.get_current_versions(session, tenant, [("Patient", patient_id)])
        for stored in patient if types is None or "Patient" in types else []:
            if since is not None and stored.last_updated < since:
                continue
            yield entry(codec.decode_version(tenant, stored, keyring), "match")
            count += 1
        after: tuple[str, str] | None = None
        while True:
            page = await repository.patient_page(session, tenant, patient_id, after, PAGE_SIZE)
            for stored in page:
                if (types is not None and stored.resource_type not in types) or (since is not None and stored.last_updated < since):
                    continue
                resource = codec.decode_version(tenant, stored, keyring)
                referenced |= _directory_references(resource)
                yield entry(resource, "match")
                count += 1
            if len(page) < PAGE_SIZE:
                break
            after = (page[-1].resource_type, page[-1].id)
        wanted = sorted(referenced)
        for start in range(0, len(wanted), PAGE_SIZE):
            for stored in await repository.get_current_versions(session, tenant, wanted[start : start + PAGE_SIZE]):
                yield entry(codec.decode_version(tenant, stored, None), "include")
                count += 1
        yield b'],"total":' + str(count).encode() + b"}"
    logger.info("export streamed", extra={"entries": count})


def _directory_references(resource: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for _, _, value, _ in reference_sites(resource, ""):
        parts = value.split("/")
        if len(parts) == 2 and is_directory(parts[0]) and parts[1]:
            found.add((parts[0], parts[1]))
    return found
