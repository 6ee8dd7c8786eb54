"""``carevault-gateway serve``."""

import sys

from carevault_common.cli import service_main
from carevault_gateway.config import Settings
from carevault_gateway.main import create_app


def main() -> int:
    return service_main("gateway", Settings, create_app, None, require_client_cert=False)


if __name__ == "__main__":
    sys.exit(main())
