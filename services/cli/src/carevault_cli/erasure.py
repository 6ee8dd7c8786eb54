"""``carevault erasure replay``: after a restore from an older backup, erase again
the patients the erasure journal names, so that erased data does not come back.

The journal (api's database, apart from the data) holds pseudonyms only. Each data
service matches them against the patients its restored database holds, with its
own erase-replay command (its own SQL, run as a subprocess like ``migrate``:
this CLI imports no service):

    carevault-api erasure-journal  |  carevault-records erase-replay --pseudonym-key-file K
                                   |  carevault-keyservice erase-replay --pseudonym-key-file K

fileservice holds blobs under opaque ids that only records knows; until Binary
exists there is nothing of a patient there (docs/audit.md, "Erasure journal").
"""

from __future__ import annotations

from pathlib import Path

import orjson

from carevault_cli.mesh import MeshLayout, run_maintenance

DATA_SERVICES = ("records", "keyservice")


def replay(
    layout: MeshLayout, pseudonym_key_file: Path, *, dry_run: bool = False, journal_file: Path | None = None
) -> list[dict[str, object]]:
    """``journal_file``: the journal as JSON lines, when api's database is not the
    source (restored too, so older than the erasures: take it from the log stream)."""
    journal = journal_file.read_bytes() if journal_file else run_maintenance(layout, "api", "erasure-journal")
    args = ["--pseudonym-key-file", str(pseudonym_key_file), *(["--dry-run"] if dry_run else [])]
    summaries: list[dict[str, object]] = []
    for service in DATA_SERVICES:
        out = run_maintenance(layout, service, "erase-replay", *args, stdin=journal)
        summaries += [orjson.loads(line) for line in out.splitlines() if line.strip()]
    return summaries


def cmd_replay(layout: MeshLayout, pseudonym_key_file: Path | None, dry_run: bool, journal_file: Path | None = None) -> int:
    key_file = pseudonym_key_file or layout.audit_dir / "pseudonym.key"
    for summary in replay(layout, key_file, dry_run=dry_run, journal_file=journal_file):
        print(orjson.dumps(summary).decode())
    return 0
