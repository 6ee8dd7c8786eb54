"""Static checks of the five Dockerfiles (no Docker engine here to build them;
checkov's Dockerfile checks run in test_checkov.py)."""

from __future__ import annotations

import re

import pytest
from deploy_helpers import REPO

DOCKERFILES = {
    "gateway": ("gateway", False),
    "api": ("services/api", True),
    "records": ("services/records", True),
    "keyservice": ("keyservice", True),
    "fileservice": ("fileservice", True),
}


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]


@pytest.mark.parametrize("svc", sorted(DOCKERFILES))
def test_dockerfile(svc: str) -> None:
    path, owns_db = DOCKERFILES[svc]
    text = (REPO / path / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+) AS \w+$", text, re.MULTILINE)
    assert len(bases) >= 2 and len(set(bases)) == 1, "multi-stage, one base"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0]), "pinned slim base"
    stages = _stages(text)
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    assert "pip install --only-binary=:all: -r /src/requirements/runtime.txt" in text
    assert f"pip install --no-deps \\\n        /src/services/common /src/services/crypto /src/{path}" in text
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE), "non-root numeric user in the final stage"
    assert "COPY --from=build /opt/carevault /opt/carevault" in final
    for forbidden in ("apt-get install", "build-essential", "gcc", "curl", "wget"):
        assert forbidden not in final, f"{forbidden} in the final image"
    assert "PIP_NO_CACHE_DIR=1" in text
    healthcheck = re.search(r"^HEALTHCHECK .*\n\s+CMD \[(.*)\]$", final, re.MULTILINE)
    assert healthcheck and '"python"' in healthcheck.group(1) and "/healthz" in healthcheck.group(1)
    assert f'ENTRYPOINT ["carevault-{svc}"]' in final and 'CMD ["serve"]' in final
    assert "EXPOSE 8443 9090" in final
    for prefix_setting in ("_HOST=0.0.0.0", "_PORT=8443", "_MANAGEMENT_PORT=9090"):
        assert f"{svc.upper()}{prefix_setting}" in final
    assert ("migrate" in text) == owns_db


def test_all_dockerfiles_share_one_base() -> None:
    bases = {b for p, _ in DOCKERFILES.values() for b in re.findall(r"^FROM (\S+) AS", (REPO / p / "Dockerfile").read_text(), re.MULTILINE)}
    assert len(bases) == 1


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = set((REPO / ".dockerignore").read_text().split())
    assert {".carevault/", "**/.venv", "**/*.pem", "**/*.key", "**/.git", ".tools/"} <= lines
