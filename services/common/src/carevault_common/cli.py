"""The ``serve`` / ``migrate`` command line that every service ships."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI
from pydantic import ValidationError

from carevault_common.app import bootstrap, build_management_app
from carevault_common.db import run_migrations
from carevault_common.mtls import server_ssl_context
from carevault_common.server import run
from carevault_common.settings import DatabaseSettings, ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def service_main(
    service: str,
    settings_type: type[S],
    create_app: Callable[[S], FastAPI],
    migrations_dir: Path | None = None,
    *,
    require_client_cert: bool = True,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"carevault-{service}")
    commands = ["serve", "migrate"] if migrations_dir is not None else ["serve"]
    parser.add_argument("command", choices=commands)
    args = parser.parse_args(argv)
    try:
        settings = settings_type()  # type: ignore[call-arg]  # values come from the environment
    except ValidationError as exc:
        # Field names and messages only: values may be secrets.
        for err in exc.errors():
            print(f"carevault-{service}: setting {'.'.join(map(str, err['loc'])) or '?'}: {err['msg']}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        assert migrations_dir is not None and isinstance(settings, DatabaseSettings)
        run_migrations(migrations_dir, settings.database_url)
        return 0
    bootstrap(service, settings)
    app = create_app(settings)
    context = server_ssl_context(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file, require_client_cert=require_client_cert
    )
    run(app, build_management_app(app), settings, context)
    return 0
