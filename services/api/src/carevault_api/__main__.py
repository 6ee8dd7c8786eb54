"""``carevault-api serve`` | migrate | erasure-journal | seed --state-dir DIR | rotate-signing-key | new-secrets-key FILE."""

import asyncio
import sys

import orjson

from carevault_api.config import MIGRATIONS_DIR, Settings
from carevault_api.erasure import repository as journal
from carevault_api.main import create_app
from carevault_common.cli import service_main
from carevault_common.db import create_engine, session_factory, session_scope
from carevault_common.settings import DatabaseSettings


def erasure_journal(settings: DatabaseSettings, argv: list[str]) -> int:
    """Print the erasure journal as JSON lines ``{"tenant", "pseudonym"}`` (no id in
    clear), for ``carevault erasure replay``."""
    if argv:
        print("carevault-api erasure-journal takes no arguments", file=sys.stderr)
        return 2

    async def dump() -> None:
        engine = create_engine(settings.database_url)
        try:
            async with session_scope(session_factory(engine)) as session:
                for entry in await journal.all_entries(session):
                    sys.stdout.write(orjson.dumps({"tenant": entry.tenant, "pseudonym": entry.pseudonym}).decode() + "\n")
        finally:
            await engine.dispose()

    asyncio.run(dump())
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "seed":
        from carevault_api.seed import main as seed_main

        return seed_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "rotate-signing-key":
        from carevault_api.seed import SeedSettings, rotate

        print(f"signing with key {asyncio.run(rotate(SeedSettings()))}; the previous key stays published until its tokens expire")
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "new-secrets-key":
        from pathlib import Path

        from carevault_crypto.sealed import SealingKey

        SealingKey.generate_file(Path(sys.argv[2]))
        print(f"wrote a new sealing key to {sys.argv[2]} (mode 0600): API_SECRETS_KEY_FILE")
        return 0
    return service_main("api", Settings, create_app, MIGRATIONS_DIR, commands={"erasure-journal": erasure_journal})


if __name__ == "__main__":
    sys.exit(main())
