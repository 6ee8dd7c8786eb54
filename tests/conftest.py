from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support import (
    CANARIES,
    SECRETS_USED,
    RunningMesh,
    drop_databases,
    find_file_key,
    find_needles,
    free_port_offset,
    running_mesh,
    secret_forms,
)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    """The five services as real subprocesses over TLS, on the embedded default
    (SQLite, in-process caches) and on PostgreSQL with Redis.

    After the last test that used it, every database, log line and state file of
    that mesh is scanned for the patient keys and canary strings the tests sent
    (invariant 1): a hit fails the suite."""
    backend: str = request.param
    # A short keyset TTL so that a doctor key added by a test reaches patients quickly.
    # A local server may stand for a clinic's JWKS URL (dev only).
    # A client pausing mid-body is given up after 4 s (60 by default), so tests can wait for it.
    env = {"RECORDS_ESCROW_KEYSET_TTL_SECONDS": "1", "API_JWKS_URI_PRIVATE_NETWORKS": "true", "GATEWAY_CLIENT_IDLE_SECONDS": "4"}
    # Free ports away from a `make run` on the default ones (and from parallel runs).
    offset = free_port_offset()
    with running_mesh(tmp_path_factory.mktemp(f"mesh-{backend}"), offset, backend, extra_env=env) as running:
        yield running
    try:
        assert_nothing_secret_at_rest(running)
    finally:
        if backend == "postgres":
            asyncio.run(drop_databases(f"cvtest{offset}"))


def assert_nothing_secret_at_rest(running: RunningMesh) -> None:
    haystacks = {
        "databases": asyncio.run(running.dump_databases()),
        "blob store": running.blob_store(),
        "state files and logs": running.state_files(),
    }
    for where, haystack in haystacks.items():
        # Every canary starts so: one search finds any of them, even one the tests lost track of.
        assert b"CANARY" not in haystack, f"a canary was found in the {where} of the {running.backend} mesh"
        assert find_file_key(haystack) is None, f"a file key was found in the {where} of the {running.backend} mesh"
        found = find_needles(haystack, [form for raw in SECRETS_USED for form in secret_forms(raw)])
        assert not found, f"a patient key was found in the {where} of the {running.backend} mesh"
        canaries = find_needles(haystack, [value.encode() for value in CANARIES])
        assert not canaries, f"canaries {sorted(canaries)} were found in the {where} of the {running.backend} mesh"
