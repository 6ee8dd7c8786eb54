"""The ``serve`` / ``migrate`` command line that every service ships.

A service may add maintenance commands (``commands``): they get the database
settings only, like ``migrate``, and the rest of the command line; the operator
CLI runs them as subprocesses (``carevault erasure replay``), never importing the
service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from carevault_common.app import bootstrap, build_management_app
from carevault_common.db import run_migrations
from carevault_common.mtls import server_ssl_context
from carevault_common.server import run
from carevault_common.settings import DatabaseSettings, ServiceSettings, migration_settings

S = TypeVar("S", bound=ServiceSettings)
# A maintenance command: database settings and its own arguments -> exit code.
MaintenanceCommand = Callable[[DatabaseSettings, list[str]], int]


def service_main(
    service: str,
    settings_type: type[S],
    create_app: Callable[[S], FastAPI],
    migrations_dir: Path | None = None,
    *,
    require_client_cert: bool = True,
    argv: list[str] | None = None,
    commands: Mapping[str, MaintenanceCommand] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"carevault-{service}")
    choices = ["serve", "migrate"] if migrations_dir is not None else ["serve"]
    parser.add_argument("command", choices=[*choices, *(commands or {})])
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in (commands or {}):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    database_only = args.command != "serve"
    loaded_type: type[BaseSettings] = migration_settings(settings_type) if database_only else settings_type
    try:
        settings = loaded_type()
    except ValidationError as exc:
        # Field names and messages only: values may be secrets.
        for err in exc.errors():
            print(f"carevault-{service}: setting {'.'.join(map(str, err['loc'])) or '?'}: {err['msg']}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        assert migrations_dir is not None and isinstance(settings, DatabaseSettings)
        run_migrations(migrations_dir, settings.database_url)
        return 0
    if commands and args.command in commands:
        assert isinstance(settings, DatabaseSettings)
        return commands[args.command](settings, rest)
    assert isinstance(settings, settings_type)
    bootstrap(service, settings)
    app = create_app(settings)
    cert_file, key_file = settings.server_certificate()
    context = server_ssl_context(cert_file, key_file, settings.tls_ca_file, require_client_cert=require_client_cert)
    run(app, build_management_app(app), settings, context)
    return 0
