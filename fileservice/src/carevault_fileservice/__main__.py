"""``carevault-fileservice serve`` | migrate."""

import sys

from carevault_common.cli import service_main
from carevault_fileservice.config import MIGRATIONS_DIR, Settings
from carevault_fileservice.main import create_app


def main() -> int:
    return service_main("fileservice", Settings, create_app, MIGRATIONS_DIR)


if __name__ == "__main__":
    sys.exit(main())
