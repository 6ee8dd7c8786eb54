from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import RunningMesh, running_mesh

# Port offsets keep the test meshes clear of a `make run` on the default ports.
_OFFSETS = {"sqlite": 1000, "postgres": 1100}


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    """The five services as real subprocesses over TLS, on the embedded default
    (SQLite, in-process caches) and on PostgreSQL with Redis."""
    backend: str = request.param
    with running_mesh(tmp_path_factory.mktemp(f"mesh-{backend}"), _OFFSETS[backend], backend) as running:
        yield running
