"""The lock that keeps two Bundles from creating the same directory resource.

A conditional create (``ifNoneExist``) or a placeholder for a conditional reference
is "search, and create if nothing matched". Two transactions doing that at once
each see nothing and each create: two Practitioners with one NPI, after which every
conditional reference to that NPI fails with 412. So when a Bundle is about to
create on an empty search, it first takes a lock named by (tenant, search) that it
holds until its transaction ends, and searches again under it.

PostgreSQL: a transaction-level advisory lock per search, taken in a fixed order
(no deadlock between two Bundles wanting the same two). SQLite has one writer at a
time: the Bundle takes the database's write lock at that point (a write that
changes nothing), so the other waits (busy timeout) and, once it gets the lock,
its searches see what the first committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_records.fhir.search import SearchQuery


def lock_key(tenant: str, query: SearchQuery) -> int:
    """A signed 64-bit advisory-lock key for (tenant, the search's type and terms)."""
    clauses = sorted((c.param, tuple(sorted(t.value for t in c.terms))) for c in query.clauses)
    name = repr((tenant, query.resource_type, tuple(sorted(query.ids)) if query.ids is not None else None, clauses))
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, person=b"cv-condcreate").digest(), "big", signed=True)


async def lock_searches(session: AsyncSession, tenant: str, queries: Iterable[SearchQuery]) -> None:
    """Hold, until this transaction ends, the create lock of each search."""
    keys = sorted({lock_key(tenant, q) for q in queries})
    if not keys:
        return
    assert session.bind is not None
    if session.bind.dialect.name == "postgresql":
        for key in keys:
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    else:
        await session.execute(text("UPDATE resources SET version_id = version_id WHERE 0 = 1"))
