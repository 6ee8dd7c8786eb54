"""``carevault-records serve`` | migrate | erase-replay."""

import sys
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from carevault_common.cli import service_main
from carevault_common.erasure_replay import replay_command
from carevault_records.config import MIGRATIONS_DIR, Settings
from carevault_records.erasure import repository as erasure
from carevault_records.main import create_app


async def _erase(session: AsyncSession, tenant: str, patient_id: str) -> object:
    # The escrow is erased by keyservice's own erase-replay (offline, no mesh call).
    return await erasure.erase_patient(session, tenant, patient_id, datetime.now(UTC))


def main() -> int:
    commands = {"erase-replay": replay_command("records", erasure.all_patients, _erase)}
    return service_main("records", Settings, create_app, MIGRATIONS_DIR, commands=commands)


if __name__ == "__main__":
    sys.exit(main())
