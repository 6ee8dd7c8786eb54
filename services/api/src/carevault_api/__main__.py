"""``carevault-api serve`` | migrate | seed --state-dir DIR | rotate-signing-key | new-secrets-key FILE."""

import asyncio
import sys

from carevault_api.config import MIGRATIONS_DIR, Settings
from carevault_api.main import create_app
from carevault_common.cli import service_main


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
    return service_main("api", Settings, create_app, MIGRATIONS_DIR)


if __name__ == "__main__":
    sys.exit(main())
