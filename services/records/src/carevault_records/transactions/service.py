"""``POST /fhir`` with a transaction (all or nothing) or a batch (entry by entry).

Planning (ids, reference rewriting, conditional references) is pure and lives in
``fhir.bundles``; this module resolves what needs the database and applies the
entries. Creates are written in bulk: a Synthea bundle of a thousand resources is
a few statements, not a thousand.

A bundle carries one ``X-Patient-Key``, so it may touch the records of one
patient (plus directory data); a bundle naming two patients is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import savepoint
from carevault_common.errors import ProblemError
from carevault_records.fhir.bundles import (
    EntryResult,
    PlannedEntry,
    TransactionPlan,
    build_response_bundle,
    creatable_queries,
    plan_transaction,
    resolve_plan,
)
from carevault_records.fhir.compartment import is_directory
from carevault_records.fhir.outcome import FhirError, outcome_for_status
from carevault_records.fhir.search import SearchQuery
from carevault_records.keys.service import RequestKeyrings
from carevault_records.resources import repository
from carevault_records.resources.service import DIRECTORY_PATIENT, ResourceService, Written, parse_version_id
from carevault_records.transactions.repository import lock_searches


class OnePatientPerBundle(ProblemError):
    status, code, title = 422, "one-patient-per-bundle", "A bundle may touch the records of one patient only"


class DirectoryResolver:
    """Finds directory resources (Practitioner?identifier=...) by their plain tokens."""

    def __init__(self, session: AsyncSession, tenant: str) -> None:
        self.session, self.tenant = session, tenant
        self._found: dict[SearchQuery, Sequence[str]] = {}

    async def lock_creates(self, queries: Iterable[SearchQuery]) -> None:
        """Before resolving: the searches that would create (they match nothing yet)
        are locked for this transaction (transactions/repository.py), so that a
        concurrent Bundle resolving the same search waits and then finds what this
        one created. Searches that already match are remembered, and lock nothing:
        the common case (a loaded directory) runs without waiting."""
        empty = []
        for query in queries:
            if not is_directory(query.resource_type):
                continue
            found = await self._search(query.resource_type, query)
            if found:
                self._found[query] = found
            else:
                empty.append(query)
        await lock_searches(self.session, self.tenant, empty)

    async def find(self, resource_type: str, query: SearchQuery) -> Sequence[str]:
        found = self._found.get(query)
        return found if found is not None else await self._search(resource_type, query)

    async def _search(self, resource_type: str, query: SearchQuery) -> Sequence[str]:
        if not is_directory(resource_type):
            raise ProblemError(
                f"Conditional matches on {resource_type} are not supported: it is patient data.", code="conditional-on-patient-data"
            )
        required = [(clause.param, [t.value for t in clause.terms]) for clause in query.clauses]
        ids = await repository.find_by_tokens(self.session, self.tenant, resource_type, DIRECTORY_PATIENT, required)
        if query.ids:
            ids = set(query.ids) if ids is None else ids & set(query.ids)
        heads = await repository.list_heads(
            self.session, self.tenant, resource_type, patient_id=None, ids=ids, updated_bounds=[], descending=False, after=None, limit=3
        )
        return [h.id for h in heads]


def _result(written: Written, status: int) -> EntryResult:
    resource = written.resource
    stamp = resource["meta"]["lastUpdated"]
    return EntryResult(status, resource["resourceType"], resource["id"], str(written.version_id), stamp)


class BundleService:
    def __init__(self, resources: ResourceService) -> None:
        self.resources = resources

    async def process(self, keyrings: RequestKeyrings, bundle: Any, base_url: str, *, placeholders: bool = False) -> dict[str, Any]:
        plan = plan_transaction(bundle)
        if len(plan.patient_ids) > 1:
            raise OnePatientPerBundle("Send one bundle per patient, each with that patient's X-Patient-Key.")
        resolver = DirectoryResolver(keyrings.session, keyrings.tenant)
        await resolver.lock_creates(creatable_queries(plan, placeholders=placeholders))
        await resolve_plan(plan, resolver, placeholders=placeholders)
        if plan.is_transaction:
            results = await self._apply(keyrings, plan, plan.processing_order(), base_url)
        else:
            results = await self._apply_batch(keyrings, plan, base_url)
        return build_response_bundle(plan, results, base_url=base_url)

    async def _apply_batch(self, keyrings: RequestKeyrings, plan: TransactionPlan, base_url: str) -> dict[int, EntryResult]:
        """Entry by entry, each failing on its own. The common case, where every
        entry succeeds, is tried first in one go (bulk writes); only if something
        fails are the entries replayed one savepoint each."""
        order = plan.processing_order()
        try:
            async with savepoint(keyrings.session):
                return await self._apply(keyrings, plan, order, base_url)
        except (FhirError, ProblemError):
            pass
        results: dict[int, EntryResult] = {}
        for entry in order:
            try:
                async with savepoint(keyrings.session):
                    results |= await self._apply(keyrings, plan, [entry], base_url)
            except (FhirError, ProblemError) as exc:
                entry.error = _as_fhir_error(exc)
        return results

    async def _apply(
        self, keyrings: RequestKeyrings, plan: TransactionPlan, entries: list[PlannedEntry], base_url: str
    ) -> dict[int, EntryResult]:
        results: dict[int, EntryResult] = {}
        now = datetime.now(UTC)
        creates = [e for e in entries if e.interaction == "create" and not e.noop]
        if creates:
            written = await self.resources.store_new(keyrings, [e.resource for e in creates if e.resource is not None], now)
            for entry, done in zip(creates, written, strict=True):
                results[entry.index] = _result(done, 201)
        for entry in entries:
            if entry.index < 0 or entry.index in results:
                continue
            results[entry.index] = await self._apply_one(keyrings, entry, base_url)
        return results

    async def _apply_one(self, keyrings: RequestKeyrings, entry: PlannedEntry, base_url: str) -> EntryResult:
        rtype, rid = entry.resource_type, entry.resource_id
        if entry.interaction == "create":  # a conditional create that matched
            return EntryResult(200, rtype, entry.existing_id)
        if entry.interaction == "update":
            assert rid is not None
            etag = f'W/"{entry.if_match}"' if entry.if_match else None
            return _result(await self.resources.update(keyrings, rtype, rid, entry.resource, etag), 200)
        if entry.interaction == "delete":
            assert rid is not None
            await self.resources.delete(keyrings, rtype, rid)
            return EntryResult(204)
        if entry.interaction == "read":
            assert rid is not None
            written = await self.resources.read(keyrings, rtype, rid)
            return EntryResult(200, rtype, rid, str(written.version_id), resource=written.resource)
        if entry.interaction == "vread":
            assert rid is not None
            assert entry.version_id is not None
            written = await self.resources.vread(keyrings, rtype, rid, parse_version_id(entry.version_id))
            return EntryResult(200, rtype, rid, str(written.version_id), resource=written.resource)
        bundle = await self.resources.search(keyrings, rtype, list(entry.search_params), base_url, lenient=False)
        return EntryResult(200, resource=bundle)


def _as_fhir_error(exc: FhirError | ProblemError) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    return FhirError(outcome_for_status(exc.status, exc.detail), exc.status)
