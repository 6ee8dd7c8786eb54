"""Replaying the erasure journal after a restore: the part every data service shares.

api keeps a journal of erased patients as pseudonyms (HMAC of tenant and patient id
under the pseudonym key, :mod:`carevault_crypto.pseudonym`), apart from the data.
After a database is restored from a backup older than some erasures, the operator
runs ``carevault erasure replay``: it reads the journal from api and pipes it, one
JSON object per line (``{"tenant": ..., "pseudonym": ...}``), into each data
service's ``erase-replay`` command. That command lists the patients its database
holds, recomputes their pseudonyms, and erases the ones in the journal with the
service's own erasure code. It prints counts, never an id.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.db import create_engine, forget_deleted_pages, session_factory, session_scope
from carevault_common.settings import DatabaseSettings
from carevault_crypto.pseudonym import PseudonymKey

ListPatients = Callable[[AsyncSession], Awaitable[list[tuple[str, str]]]]
ErasePatient = Callable[[AsyncSession, str, str], Awaitable[object]]


def read_journal(lines: Iterable[str | bytes]) -> set[tuple[str, str]]:
    """(tenant, pseudonym) pairs from JSON lines; blank lines are skipped."""
    entries: set[tuple[str, str]] = set()
    for line in lines:
        if not line.strip():
            continue
        entry = orjson.loads(line)
        entries.add((str(entry["tenant"]), str(entry["pseudonym"])))
    return entries


def journalled(candidates: Iterable[tuple[str, str]], journal: set[tuple[str, str]], key: PseudonymKey) -> list[tuple[str, str]]:
    """The (tenant, patient id) pairs among ``candidates`` that the journal names."""
    return sorted({(tenant, pid) for tenant, pid in candidates if (tenant, key.pseudonym(tenant, pid)) in journal})


def replay_command(service: str, list_patients: ListPatients, erase: ErasePatient) -> Callable[[DatabaseSettings, list[str]], int]:
    """``carevault-<service> erase-replay --pseudonym-key-file F [--dry-run] < journal.jsonl``."""

    def command(settings: DatabaseSettings, argv: list[str]) -> int:
        parser = argparse.ArgumentParser(prog=f"carevault-{service} erase-replay")
        parser.add_argument("--pseudonym-key-file", type=Path, required=True)
        parser.add_argument("--dry-run", action="store_true", help="count what would be erased; change nothing")
        args = parser.parse_args(argv)
        key = PseudonymKey.from_text(args.pseudonym_key_file.read_text(encoding="utf-8"))
        journal = read_journal(sys.stdin)
        matched = asyncio.run(_replay(settings.database_url, journal, key, list_patients, erase, dry_run=args.dry_run))
        summary = {"service": service, "journal_entries": len(journal), "matched": matched, "erased": 0 if args.dry_run else matched}
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return 0

    return command


async def _replay(
    url: str, journal: set[tuple[str, str]], key: PseudonymKey, list_patients: ListPatients, erase: ErasePatient, *, dry_run: bool
) -> int:
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        async with session_scope(sessions) as session:
            found = journalled(await list_patients(session), journal, key)
        if not dry_run:
            for tenant, patient_id in found:
                async with session_scope(sessions) as session:  # one transaction per patient
                    await erase(session, tenant, patient_id)
            await forget_deleted_pages(engine)
        return len(found)
    finally:
        await engine.dispose()
