"""``carevault-keyservice serve`` | migrate | erase-replay."""

import sys

from carevault_common.cli import service_main
from carevault_common.erasure_replay import replay_command
from carevault_keyservice.config import MIGRATIONS_DIR, Settings
from carevault_keyservice.escrow import repository
from carevault_keyservice.main import create_app


def main() -> int:
    commands = {"erase-replay": replay_command("keyservice", repository.all_patients, repository.delete_patient)}
    return service_main("keyservice", Settings, create_app, MIGRATIONS_DIR, commands=commands)


if __name__ == "__main__":
    sys.exit(main())
