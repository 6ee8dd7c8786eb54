"""``carevault-api serve`` | migrate."""

import sys

from carevault_api.config import MIGRATIONS_DIR, Settings
from carevault_api.main import create_app
from carevault_common.cli import service_main


def main() -> int:
    return service_main("api", Settings, create_app, MIGRATIONS_DIR)


if __name__ == "__main__":
    sys.exit(main())
